"""The stored results in ``results/`` are what the code computes, and an interrupted sweep resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lib import perceptron
from lib.cache import config_key

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "results"


def test_a_stored_paper_scale_run_is_recomputed_exactly():
    # The perceptron of Fig. 5 with the paper's sizes and 10 seeds, tested after every task: seconds to compute.
    config, seeds = perceptron.PerceptronConfig(), perceptron.PAPER_SEEDS
    key = perceptron.run_description(config, seeds, "task")
    path = STORED / perceptron.EXPERIMENT / f"{config_key(key)}.json"
    assert path.is_file(), f"{path.relative_to(ROOT)} is not in the repository"
    stored = json.loads(path.read_text())["result"]
    fresh = perceptron.run_perceptron(config, seeds, evaluate="task", cache=False)
    for name in ("standard", "presynaptic", "frozen", "mean_p"):
        assert fresh[name] == stored[name], f"{name} differs from the stored result"


SWEEP = """
import sys
from lib.continual import LifelongProtocol, RunSpec, run_specs
from lib.tasks import Benchmark, Task
import torch

def task(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3000, 8, generator=g)
    return Task(str(seed), x[:2000], (x[:2000, 0] > 0).long(), x[2000:], (x[2000:, 0] > 0).long())

bench = Benchmark("synthetic", tuple(task(s) for s in range(3)), 2)
# a short run, then a long one (epochs from the command line); each is stored as soon as it is trained
for epochs, spec in ((1, RunSpec("sgd", 0, (("optimizer", "sgd"), ("lr", 0.01)))), (int(sys.argv[1]), RunSpec("joint", 0))):
    protocol = LifelongProtocol("split_mnist", epochs=epochs, batch_size=10, eval_samples=1, hidden=(16, 16))
    run_specs(protocol, [spec], benchmark=bench)
    print("stored", spec.method, flush=True)
"""


def test_a_killed_sweep_leaves_only_complete_results_and_resumes(tmp_path):
    env = dict(os.environ, PRESYN_RESULTS=str(tmp_path), PRESYN_COMPILE="0", OMP_NUM_THREADS="1")
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    # the second run would train for minutes: it is killed while training
    proc = subprocess.Popen([sys.executable, str(script), "5000"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "stored sgd"  # the first run is stored, the second is training
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = list((tmp_path / "lifelong").iterdir())
    assert len(files) == 1 and files[0].suffix == ".json", "a killed run must leave nothing behind"
    json.loads(files[0].read_text())  # complete, readable
    first = files[0].read_bytes()
    # the resumed sweep finds the stored run (it would rewrite the file, with another time, if it
    # trained it again) and trains only the missing one, here with fewer epochs to keep the test short
    done = subprocess.run([sys.executable, str(script), "3"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "lifelong").glob("*.json"))) == 2
    assert files[0].read_bytes() == first

"""``python -m lib``: bad input is answered with one line before any work; what runs says what it does."""
import json

import pytest

from lib import cli_experiments, reproduce
from lib.__main__ import main
from lib.model import StochasticMLP, presynaptic
from lib.tasks import Benchmark
from lib.train import fit
from tests.test_train import blobs


@pytest.fixture
def no_training(monkeypatch):
    """Any training started by a command fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command trained before checking its arguments")

    monkeypatch.setattr(cli_experiments, "run_energy", refuse)
    monkeypatch.setattr("lib.continual.run_specs", refuse)


def one_line_error(capsys, argv: list[str]) -> str:
    """The command's error: exit status 2 and one line on stderr."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_an_unknown_command_is_named_and_help_goes_to_stdout(capsys):
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and err.count("\n") == 1
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert "reproduce" in out and err == ""


@pytest.mark.parametrize("command", [["energy", "--model", "presynaptic"],
                                     ["lifelong", "--benchmark", "split_mnist", "--method", "sgd"]])
def test_the_output_file_is_checked_before_training(command, tmp_path, capsys, no_training):
    assert "is a folder" in one_line_error(capsys, [*command, "--json", str(tmp_path)])
    assert "does not exist" in one_line_error(capsys, [*command, "--json", str(tmp_path / "nowhere" / "out.json")])
    assert "cannot write" in one_line_error(capsys, [*command, "--json", "/proc/out.json"])


def test_negative_seeds_and_a_subset_smaller_than_a_batch_are_refused(tmp_path, capsys, no_training):
    out = str(tmp_path / "out.json")
    energy = ["energy", "--model", "presynaptic", "--json", out]
    lifelong = ["lifelong", "--benchmark", "split_mnist", "--method", "sgd", "--json", out]
    assert "must be an integer >= 0, got -1" in one_line_error(capsys, [*energy, "--seeds", "-1"])
    assert "must be an integer >= 0, got -1" in one_line_error(capsys, [*lifelong, "--seeds", "0", "-1"])
    assert "smallest valid subset is 100" in one_line_error(capsys, [*lifelong, "--subset", "50"])
    assert "smallest valid subset is 20" in one_line_error(capsys, [*lifelong, "--subset", "10", "--batch-size", "20"])
    assert "smallest valid subset is 100" in one_line_error(capsys, [*energy, "--subset", "99"])


def test_energy_prints_the_table_of_the_runs_it_wrote(tmp_path, capsys, monkeypatch):
    result = {"accuracy": 0.91, "mutual_information": 1.5, "energy": 321.0, "mean_p": 0.42}
    monkeypatch.setattr(cli_experiments, "run_energy", lambda runs, protocol, progress: [result] * len(runs))
    out = tmp_path / "out.json"
    assert main(["energy", "--model", "fixed", "--weight-decay", "0", "0.01", "--seeds", "3", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "lambda", "seed", "p", "accuracy", "MI", "(bits)", "energy", "mean", "p"]
    assert lines[2].split() == ["fixed", "0.01", "3", "0.4", "0.9100", "1.5000", "321.0", "0.420"]
    assert lines[3] == f"wrote 2 runs to {out}" and len(json.loads(out.read_text())["runs"]) == 2


def test_training_prints_a_line_per_epoch_when_stderr_is_no_terminal(capsys):
    net = StochasticMLP([8, 16, 3], [presynaptic(seed=0)])
    fit(net, Benchmark("blobs", (blobs(0, n=40),), 3), epochs=2, batch_size=10, eval_every="never", progress=True,
        compile=False)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" done")[0] for line in lines] == ["blobs: task 1/1, epoch 1/2", "blobs: task 1/1, epoch 2/2"]


def test_the_dry_run_gives_each_jobs_minutes_and_the_predicted_total(capsys):
    assert main(["reproduce", "--dry-run", "--workers", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["minutes", "job"] and float(lines[1].split()[0]) > 10
    assert lines[-1].startswith(f"total: {len(reproduce.all_jobs())} jobs,") and "on 2 worker(s)" in lines[-1]
    assert "cluster has its own" in one_line_error(capsys, ["reproduce", "--scheduler", "tcp://localhost:8786",
                                                            "--workers", "2"])


def test_the_command_of_missing_runs_is_built_from_the_commands_own_options():
    command = cli_experiments.lifelong_command("perm_mnist", "ewc", [2], overrides=(("ewc_lambda", 30.0),), json="o.json")
    assert command == ".venv/bin/python -m lib lifelong --benchmark perm_mnist --method ewc --seeds 2 --ewc-lambda 30 --json o.json"
    args = cli_experiments.lifelong_parser().parse_args(command.split()[4:])
    assert (args.benchmark, args.seeds, args.ewc_lambda, args.epochs, args.batch_size) == ("perm_mnist", [2], 30.0, 10, 100)
    assert "--batch-size 128" in cli_experiments.lifelong_command("perm_mnist", "bgd", [0], batch_size=128)
    with pytest.raises(ValueError, match="presynaptic has no setting 'bogus'"):  # a value the command cannot take
        cli_experiments.lifelong_command("perm_mnist", "presynaptic", [0], overrides=(("bogus", 0.05),), json="o.json")


def test_any_setting_of_a_run_round_trips_through_set_with_its_type():
    """A tuned run's settings (a search's best trial) become --set words and come back as the same
    overrides, so the same cache key: a float stays a float even when written as an integer."""
    overrides = (("batch_size", 128), ("std_init", 0.0123457), ("mean_eta", 1.0), ("mean_init", "reference"))
    command = cli_experiments.lifelong_command("perm_mnist", "bgd", [0, 1], overrides=overrides, json="o.json")
    assert "--batch-size 128 --set std_init=0.0123457 --set mean_eta=1 --set mean_init=reference" in command
    args = cli_experiments.lifelong_parser().parse_args(command.split()[4:])
    parsed = cli_experiments.parse_settings("bgd", "perm_mnist", args.settings)
    assert parsed == overrides[1:] and type(dict(parsed)["mean_eta"]) is float and args.batch_size == 128
    online = cli_experiments.parse_settings("ewc", "split_mnist", ["ewc_mode=online", "ewc_gamma=0.9", "optimizer=sgd"])
    assert online == (("ewc_mode", "online"), ("ewc_gamma", 0.9), ("optimizer", "sgd"))


@pytest.mark.parametrize("words, message", [
    (["lr"], "--set needs NAME=VALUE"),
    (["bogus=1"], "ewc has no setting 'bogus'; its settings: "),
    (["lr=fast"], "lr takes a value of type float, got 'fast'"),
    (["batch_size=128"], "batch_size is a setting of the protocol: use --batch-size"),
])
def test_bad_settings_are_one_line_errors_before_any_training(capsys, words, message):
    argv = ["lifelong", "--benchmark", "split_mnist", "--method", "ewc", "--json", "/tmp/never-written.json"]
    for word in words:
        argv += ["--set", word]
    assert message in one_line_error(capsys, argv)

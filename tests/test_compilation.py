"""torch's compiled kernels are cached apart for each instruction set that ATen is pinned to."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cache_dir_of_a_process(**settings: str) -> str:
    """The folder in which a fresh process that imports ``lib.compilation`` caches compiled kernels."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "TORCHINDUCTOR_CACHE_DIR")}
    code = ("import lib.compilation\n"
            "from torch._inductor.runtime.cache_dir_utils import cache_dir\n"
            "print(cache_dir())")
    done = subprocess.run([sys.executable, "-c", code], env=env | settings, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_process_pinned_to_avx2_and_an_unpinned_one_never_share_compiled_kernels(tmp_path):
    pinned, unpinned = cache_dir_of_a_process(ATEN_CPU_CAPABILITY="avx2"), cache_dir_of_a_process()
    assert pinned != unpinned
    assert pinned.endswith("_avx2") and unpinned.endswith("_native")
    assert cache_dir_of_a_process(TORCHINDUCTOR_CACHE_DIR=str(tmp_path)) == str(tmp_path)

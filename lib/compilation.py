"""When the training and evaluation kernels go through :func:`torch.compile`: decided here, once.

Compiling fuses the element-wise work of a step (the release masks, eqs. 4-5, BGD's noise) into a
few multi-threaded loops, several times faster on the CPU, at a cost of about 10-30 s per new shape.
"""
from __future__ import annotations

import logging
import os
import shutil
import warnings
from typing import Callable

import torch
from torch._inductor.runtime.cache_dir_utils import default_cache_dir


def instruction_set_cache_dir() -> str:
    """The folder of torch's compiled kernels, one per vector instruction set that ATen is pinned to.

    The code that :func:`torch.compile` generates for the CPU steps through arrays by the vector width
    of ``ATEN_CPU_CAPABILITY`` (8 floats for ``avx2``, 16 for ``avx512``), but torch's cache of compiled
    graphs does not tell the two apart: a graph cached by a process pinned to AVX2 (as the tests are,
    ``tests/__init__.py``) and reused by an unpinned one on an AVX-512 CPU writes past its buffers and
    kills the process. Each setting therefore gets its own folder beside torch's default one
    (``torchinductor_<user>_avx2``, ``..._native`` when unpinned). A folder set in
    ``TORCHINDUCTOR_CACHE_DIR`` other than torch's default is kept as it is.
    """
    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is not None and os.path.abspath(chosen) != default:
        return chosen
    return f"{default}_{os.environ.get('ATEN_CPU_CAPABILITY') or 'native'}"


os.environ["TORCHINDUCTOR_CACHE_DIR"] = instruction_set_cache_dir()
COMPILE_MIN_STEPS = 3000  # below this, compiling costs more than it saves
# A process that trains many kinds of runs (``make reproduce``'s workers) compiles the step once per
# plan and shape. Past torch's default of 8 versions of one function it would silently run the
# function eagerly, about twice as slow: the limit is raised to what such a process may need.
torch._dynamo.config.recompile_limit = 256
# torch warns "No CUDA runtime is found" whenever it compiles on a machine with a CUDA toolkit but
# no GPU, which says nothing about training on the CPU: only that logger's errors are shown.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
_compiled: dict[Callable, Callable] = {}
_compile_failed = False


def compile_available() -> bool:
    """Whether :func:`torch.compile` may be used: on CUDA, or on a CPU with a C++ compiler."""
    if _compile_failed or os.environ.get("PRESYN_COMPILE", "1") == "0":
        return False
    return torch.cuda.is_available() or shutil.which(os.environ.get("CXX", "g++")) is not None


def compiled_or_eager(function: Callable, *args, compile: bool = True):
    """``function(*args)``, through :func:`torch.compile` when ``compile`` is set.

    Each function is compiled once. If compiling or running the compiled code fails (a missing or
    broken compiler), a warning says so, and this and every later call runs eagerly: a compiler
    problem never stops training.
    """
    global _compile_failed
    if compile and not _compile_failed:
        if function not in _compiled:
            _compiled[function] = torch.compile(function, dynamic=False)
        try:
            return _compiled[function](*args)
        except Exception as err:
            _compile_failed = True
            warnings.warn(f"torch.compile failed ({type(err).__name__}); training continues without it")
    return function(*args)


def compile_worthwhile(steps: int) -> bool:
    """Whether a computation of ``steps`` calls of a compiled kernel repays the compilation."""
    return compile_available() and steps >= COMPILE_MIN_STEPS

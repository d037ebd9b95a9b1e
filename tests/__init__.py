"""The tests' numbers are pinned to one x86 instruction set before torch is loaded.

The seeded smoke-scale outputs the notebook checks compare (``tests/notebooks``) come out bit for bit the same
only if every machine sums in the same order, and the order of a vectorised sum follows the vector width: an
AVX-512 CPU and an AVX2 one otherwise differ in the last bits, which a few training steps near chance level
turn into a different second decimal. So MKL (conditional numerical reproducibility), oneDNN and ATen's own
kernels all take their AVX2 code path here, on every CPU that has it. A setting already in the environment wins.
"""
import os

PINNED_NUMERICS = {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
for _name, _value in PINNED_NUMERICS.items():
    os.environ.setdefault(_name, _value)

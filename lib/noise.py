"""Counter-based random numbers: the n-th number of a stream is a function of (seed, n) alone.

A stream is SplitMix64 (Steele, Lea & Flood 2014; the generator that seeds ``xoshiro``), whose n-th
64-bit output is a bijective mix of ``seed + n * 0x9E3779B97F4A7C15``; Box and Muller (1958) turn
the two 24-bit halves :math:`u_1 \\in (0, 1]`, :math:`u_2 \\in [0, 1)` of each output into one normal
number :math:`z = \\sqrt{-2\\ln u_1}\\,\\cos(2\\pi u_2)` (BGD's noise, :mod:`lib.bgd`).

The release masks (:mod:`lib.model`) need about :math:`2 \\cdot 10^5` uniform numbers per step, and
64-bit products are slow in the CPU's vector units (AVX2 has no 64-bit multiply). Their numbers come
from a keyed 32-bit hash instead: one SplitMix64 output per mask is a 64-bit key
:math:`(k_1, k_2)`, and synapse i's number is the top 24 bits of :math:`h(h(i \\oplus k_1) \\oplus k_2)`,
where :math:`h` is ``lowbias32`` (Wellons 2018, "Prospecting for hash functions": xor-shift, multiply,
xor-shift, multiply, xor-shift; a bijection of the 32-bit words). The two keyed rounds make the masks
of different keys unrelated, not permutations of one another, at three times the speed of SplitMix64.
Because a number depends on its position only, any block of a stream is written as element-wise
tensor arithmetic: under :func:`torch.compile` it becomes one vectorised, multi-threaded loop fused
with whatever uses the numbers, instead of a sequential generator filling a buffer. Integer
products wrap modulo :math:`2^{64}` in the int64 dtype, as SplitMix64 requires, and modulo
:math:`2^{32}` in int32, as the hash requires.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

def _int64(value: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``value``."""
    return value - (1 << 64) if value >= 1 << 63 else value


# SplitMix64's constants, as the int64 numbers with their bits
_GOLDEN_GAMMA = _int64(0x9E3779B97F4A7C15)
_MIX_1 = _int64(0xBF58476D1CE4E5B9)
_MIX_2 = _int64(0x94D049BB133111EB)
# lowbias32's multipliers (both below 2**31, so int32 literals)
_HASH_1 = 0x21F0AAAD
_HASH_2 = 0x735A2D97


def _shift_right(z: Tensor, bits: int, width: int = 64) -> Tensor:
    """Logical (unsigned) right shift of the ``width`` bits of an int64 (64) or int32 (32) tensor."""
    return (z >> bits) & ((1 << (width - bits)) - 1)


def splitmix64(seed: Tensor | int, position: Tensor) -> Tensor:
    """The ``position``-th output (0, 1, ...) of the SplitMix64 stream ``seed``, as int64 bits."""
    z = seed + (position + 1) * _GOLDEN_GAMMA
    z = (z ^ _shift_right(z, 30)) * _MIX_1
    z = (z ^ _shift_right(z, 27)) * _MIX_2
    return z ^ _shift_right(z, 31)


def standard_normal(seed: Tensor | int, position: Tensor) -> Tensor:
    """Float32 :math:`\\mathcal N(0, 1)` numbers at the int64 ``position``\\ s of the stream ``seed``.

    ``seed`` (an int or an int64 tensor, e.g. one per run) broadcasts against ``position``. Numbers at
    distinct positions of one stream are independent; so are those of streams with unrelated seeds.
    Box-Muller on 24-bit uniforms bounds :math:`|z|` by :math:`\\sqrt{48 \\ln 2} \\approx 5.77`, a tail
    of probability :math:`8 \\cdot 10^{-9}`.
    """
    bits = splitmix64(seed, position)
    u1 = (_shift_right(bits, 40) + 1).float() * 2.0**-24
    u2 = (bits & 0xFFFFFF).float() * 2.0**-24
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2 * math.pi) * u2)


def lowbias32(x: Tensor) -> Tensor:
    """Wellons' ``lowbias32`` of the 32 bits of an int32 tensor: a bijective mix of the 32-bit words."""
    x = x ^ _shift_right(x, 16, 32)
    x = x * _HASH_1
    x = x ^ _shift_right(x, 15, 32)
    x = x * _HASH_2
    return x ^ _shift_right(x, 15, 32)


def _low_word(z: Tensor) -> Tensor:
    """The low 32 bits of an int64 tensor, as the int32 with those bits."""
    return (((z & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000).to(torch.int32)


def keyed_uniform(key: Tensor, index: Tensor) -> Tensor:
    """Float32 :math:`U[0, 1)` numbers at the int32 ``index``\\ es of the stream keyed by the int64 ``key``.

    With :math:`k_1, k_2` the low and high words of the key and :math:`h` :func:`lowbias32`, number i is
    the top 24 bits of :math:`h(h(i \\oplus k_1) \\oplus k_2)` times :math:`2^{-24}` (module docstring).
    For a fixed key the :math:`2^{32}` indices map to distinct words, so a block of indices draws
    without repetition; keys from :func:`splitmix64` make the streams of different keys independent.
    ``key`` broadcasts against ``index`` (e.g. ``(R, 1)`` keys, one per run, against ``(P,)`` indices).
    """
    x = lowbias32(index ^ _low_word(key))
    x = lowbias32(x ^ _low_word(_shift_right(key, 32)))
    return _shift_right(x, 8, 32).float() * 2.0**-24

"""Counter-based numbers: SplitMix64 bit for bit, the normal and uniform distributions, independence."""
import math

import pytest
import torch

from lib.noise import keyed_uniform, lowbias32, splitmix64, standard_normal

MASK = (1 << 64) - 1


def splitmix64_reference(seed: int, n: int) -> list[int]:
    """The first n outputs of SplitMix64 (Steele, Lea & Flood 2014) in plain Python integers."""
    out, state = [], seed
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("seed", [0, 1234567, 2**63 - 1, -5])
def test_splitmix64_matches_the_reference_bit_for_bit(seed):
    got = splitmix64(torch.tensor(seed), torch.arange(1000)).tolist()
    assert [v & MASK for v in got] == splitmix64_reference(seed & MASK, 1000)


def test_splitmix64_known_outputs():
    # the published first outputs of SplitMix64 seeded with 1234567
    assert [v & MASK for v in splitmix64(1234567, torch.arange(3)).tolist()] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_numbers_are_standard_normal():
    z = standard_normal(torch.tensor(42), torch.arange(2_000_000)).double()
    assert torch.isfinite(z).all()
    assert abs(z.mean().item()) < 4 / math.sqrt(2e6)
    assert abs(z.var().item() - 1) < 4 * math.sqrt(2 / 2e6)
    assert abs((z**3).mean().item()) < 4 * math.sqrt(15 / 2e6)
    assert abs((z**4).mean().item() - 3) < 4 * math.sqrt(96 / 2e6)
    # Kolmogorov-Smirnov distance to the normal CDF (critical value at p = 0.001: 1.95 / sqrt(n))
    s = z.sort().values
    cdf = 0.5 * (1 + torch.erf(s / math.sqrt(2)))
    n = s.numel()
    ks = torch.maximum(torch.arange(1, n + 1) / n - cdf, cdf - torch.arange(n) / n).max().item()
    assert ks < 1.95 / math.sqrt(n)
    assert s[-1] <= math.sqrt(48 * math.log(2)) + 1e-5


def test_neighbours_and_streams_are_uncorrelated():
    n = 1_000_000
    a = standard_normal(7, torch.arange(n + 1))
    b = standard_normal(8, torch.arange(n))
    for x, y in ((a[:-1], a[1:]), (a[:-1], b), (a[:-1].square() - 1, a[1:].square() - 1)):
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 5 / math.sqrt(n)


def test_a_number_depends_on_its_seed_and_position_only():
    seeds = torch.tensor([[3], [4]])
    block = standard_normal(seeds, torch.arange(100, 200).view(1, 100))
    assert torch.equal(block[0], standard_normal(3, torch.arange(100, 200)))
    assert torch.equal(block[1, 50:], standard_normal(4, torch.arange(150, 200)))


def test_compiled_numbers_match_eager_ones():
    from lib.compilation import compile_available

    if not compile_available():
        pytest.skip("torch.compile is not available here")
    position = torch.arange(10_007)  # not a multiple of the vector width: the scalar tail too
    bits = torch.compile(splitmix64, dynamic=False)(torch.tensor(9), position)
    assert torch.equal(bits, splitmix64(torch.tensor(9), position))  # integer products wrap alike
    compiled = torch.compile(standard_normal, dynamic=False)(torch.tensor(9), position)
    assert torch.allclose(compiled, standard_normal(torch.tensor(9), position), atol=1e-5)


def lowbias32_reference(x: int) -> int:
    """Wellons' lowbias32 on a Python int, modulo 2**32."""
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    return x ^ (x >> 15)


def test_lowbias32_matches_the_reference_bit_for_bit():
    words = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF] + list(range(1000, 2000, 7))
    signed = torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32)
    assert [v & 0xFFFFFFFF for v in lowbias32(signed).tolist()] == [lowbias32_reference(w) for w in words]


def test_keyed_uniform_is_the_documented_function_of_key_and_index():
    key = splitmix64(torch.tensor(77), torch.tensor(5))
    k = int(key) & MASK
    k1, k2 = k & 0xFFFFFFFF, k >> 32
    expected = [(lowbias32_reference(lowbias32_reference(i ^ k1) ^ k2) >> 8) / 2**24 for i in range(500)]
    assert keyed_uniform(key, torch.arange(500, dtype=torch.int32)).tolist() == expected


def test_a_block_of_one_key_never_repeats_a_word():
    x = lowbias32(lowbias32(torch.arange(1 << 20, dtype=torch.int32) ^ 12345) ^ -999)
    assert x.unique().numel() == 1 << 20


def test_uniform_numbers_are_uniform_on_the_24_bit_grid():
    n = 2_000_000
    u = keyed_uniform(splitmix64(torch.tensor(42), torch.tensor(0)), torch.arange(n, dtype=torch.int32)).double()
    assert u.min() >= 0 and u.max() < 1
    assert torch.equal(u * 2**24, (u * 2**24).round())  # multiples of 2^-24, exact in float32
    assert abs(u.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 4 * math.sqrt(1 / 180 / n)  # Var of (u - 1/2)^2 is 1/180
    s = u.sort().values
    ks = torch.maximum(torch.arange(1, n + 1) / n - s, s - torch.arange(n) / n).max().item()
    assert ks < 1.95 / math.sqrt(n)  # Kolmogorov-Smirnov at p = 0.001


@pytest.mark.parametrize("keys", [
    "consecutive masks",  # the keys of masks t and t + 1 of one stream
    "one bit apart",  # keys that differ in a single bit, low word and high word
])
def test_uniform_neighbours_and_keys_are_uncorrelated(keys):
    n = 1_000_000
    index = torch.arange(n + 1, dtype=torch.int32)
    if keys == "consecutive masks":
        key_a, key_b = splitmix64(torch.tensor(11), torch.tensor(0)), splitmix64(torch.tensor(11), torch.tensor(1))
        others = [keyed_uniform(key_b, index[:-1])]
    else:
        key_a = torch.tensor(0x1234_5678_9ABC_DEF0)
        others = [keyed_uniform(key_a ^ (1 << bit), index[:-1]) for bit in (0, 7, 31, 32, 45, 62)]
    a = keyed_uniform(key_a, index)
    for x, y in [(a[:-1], a[1:])] + [(a[:-1], b) for b in others]:
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 5 / math.sqrt(n)
    for b in others:  # masks at p = 1/2 agree on half of the synapses, as independent masks do
        assert abs(((a[:-1] < 0.5) == (b < 0.5)).double().mean().item() - 0.5) < 5 * 0.5 / math.sqrt(n)


def test_compiled_uniforms_match_eager_ones_bit_for_bit():
    from lib.compilation import compile_available

    if not compile_available():
        pytest.skip("torch.compile is not available here")
    index = torch.arange(10_007, dtype=torch.int32)  # not a multiple of the vector width: the scalar tail too
    keys = splitmix64(torch.tensor([[5], [6]]), torch.tensor(3))
    assert torch.equal(torch.compile(keyed_uniform, dynamic=False)(keys, index), keyed_uniform(keys, index))

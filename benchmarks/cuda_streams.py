"""Whether the counter-based random streams (``lib/noise.py``) give the same numbers on CUDA as on the CPU.

A run's release masks and BGD's noise are pure functions of its seed and a counter, so they should not
depend on the device: integer arithmetic (SplitMix64, the keyed 32-bit hash) must agree bit for bit,
eagerly and through ``torch.compile``; the normal numbers (Box-Muller: a logarithm, a square root and a
cosine) may differ in their last bits between the two devices' maths libraries. Prints one line per
stream and writes ``results/benchmarks/cuda-streams.json``. Needs a CUDA device.
Usage: ``python benchmarks/cuda_streams.py``.
"""
from __future__ import annotations

import json

import torch

from lib.cache import machine, results_root
from lib.data import write_atomic
from lib.model import release_uniforms
from lib.noise import splitmix64, standard_normal

SEEDS = [0, 1, 2, 12345, 2**40 + 7]  # one stream per run, as in a batched network
POSITIONS = 1 << 20  # numbers per stream compared
SHAPES = [torch.Size((200, 784)), torch.Size((200, 200)), torch.Size((10, 200))]  # one release mask


def streams(seeds: torch.Tensor, start: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every stream's numbers at :data:`POSITIONS` counters from ``start`` (an int64 scalar tensor, as
    the training step's counter is), and three release masks, on the device of ``seeds``."""
    position = torch.arange(POSITIONS, dtype=torch.int64, device=seeds.device) + start
    masks = [torch.cat([u.flatten(1) for u in release_uniforms(seeds, start + t, SHAPES)], 1) for t in (0, 1, 10**9)]
    return {"splitmix64 (int64 bits)": splitmix64(seeds.view(-1, 1), position),
            "release-mask uniforms (3 masks)": torch.cat(masks, 1),
            "BGD normals (Box-Muller)": standard_normal(seeds.view(-1, 1), position)}


def arguments(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`streams`' arguments on ``device``: the seeds, and the first counter as an int64 tensor."""
    return torch.tensor(SEEDS, dtype=torch.int64, device=device), torch.zeros((), dtype=torch.int64, device=device)


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; this check compares CUDA with the CPU")
    cpu = streams(*arguments("cpu"))
    on_cuda = {"eager": streams(*arguments("cuda")), "compiled": torch.compile(streams)(*arguments("cuda"))}
    report = {"device": machine(), "torch": torch.__version__, "seeds": SEEDS, "numbers per stream": POSITIONS,
              "streams": {}}
    for name, reference in cpu.items():
        entry = {}
        for how, values in on_cuda.items():
            values = values[name].cpu()
            entry[f"CUDA {how}: numbers equal to the CPU's bit for bit"] = f"{int((values == reference).sum())} of {values.numel()}"
            if values.is_floating_point():
                entry[f"CUDA {how}: largest difference"] = float((values - reference).abs().max())
        report["streams"][name] = entry
        print(f"{name}: " + "; ".join(f"{k} {v}" for k, v in entry.items()))
    write_atomic(results_root() / "benchmarks" / "cuda-streams.json", json.dumps(report, indent=1).encode())


if __name__ == "__main__":
    main()

"""The command-line arguments every peer driver of ``benchmarks/crosscheck.py`` shares (each driver runs
in its own environment, with this folder on its path)."""
from __future__ import annotations

import argparse
from pathlib import Path


def peer_parser(description: str, *, checkout_of: str | None = None, epochs: int = 1) -> argparse.ArgumentParser:
    """A parser with the exported data folder, the output file, epochs per task, batch size and seed,
    and (``checkout_of``: the peer's repository) the path of the peer's checkout."""
    parser = argparse.ArgumentParser(description=description)
    if checkout_of is not None:
        parser.add_argument("--checkout", type=Path, required=True, help=f"a checkout of {checkout_of}")
    parser.add_argument("--data", type=Path, required=True, help="folder of the arrays exported by crosscheck.py")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return parser

"""What the commands of ``python -m lib`` share: bad input is answered with one line, before any work."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), without the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def positive(text: str) -> int:
    """An argument that must be an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative(text: str) -> int:
    """An argument that must be an integer >= 0 (a seed)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def check_output(parser: argparse.ArgumentParser, option: str, path: Path) -> None:
    """Stop with one line unless ``path`` can be written as a file (checked before any training)."""
    folder = path.parent
    if path.is_dir():
        parser.error(f"{option} {path} is a folder; give a file name")
    if not folder.is_dir():
        parser.error(f"{option} {path}: the folder {folder} does not exist")
    try:  # the file is written as a temporary file in its folder, then renamed (lib.data.write_atomic)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        parser.error(f"{option} {path}: cannot write into {folder} ({err.strerror})")


def say(message: str) -> None:
    """A line of progress or status on stderr (kept apart from the results on stdout)."""
    print(message, file=sys.stderr, flush=True)

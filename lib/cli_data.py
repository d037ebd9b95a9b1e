"""``python -m lib data fetch|verify [NAME ...]``: obtain and check the raw data files."""
from __future__ import annotations

import sys

from .cli_common import Parser
from .data import DATASETS, DataError, fetch, raw_folder, verify


def main(argv: list[str]) -> int:
    """Fetch or verify the named datasets (all by default); 0 when every one is in order, 1 otherwise."""
    parser = Parser(prog="python -m lib data", description="MNIST and Fashion-MNIST files")
    parser.add_argument("action", choices=["fetch", "verify"],
                        help="fetch: make the files present and verified; verify: check presence and MD5 only")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--root", help="cache folder (default: $PRESYN_DATA, else data/ in the repository)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; valid names: {', '.join(DATASETS)}")
    status = 0
    for name in args.names or list(DATASETS):
        try:
            if args.action == "fetch":
                fetch(name, args.root)
            else:
                verify(name, args.root)
                print(f"{DATASETS[name].title}: all files verified in {raw_folder(name, args.root)}")
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
    return status

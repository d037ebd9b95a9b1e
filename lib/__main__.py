"""Command line of the library: ``python -m lib data|energy|lifelong|reproduce|compare|search ...``."""
from __future__ import annotations

import sys

COMMANDS = {
    "data": "fetch or verify the MNIST and Fashion-MNIST files",
    "energy": "train the networks of the energy experiment (Fig. 1) and write their results as JSON",
    "lifelong": "continual learning of one method on one benchmark (Fig. 4, Appendix table) as JSON",
    "reproduce": "train every run of the book not stored yet, on a Dask cluster (resumable)",
    "compare": "how many runs of a second results folder equal the stored ones, bit for bit",
    "search": "random search of a method's settings on one benchmark, trials best first (resumable)",
}


def usage() -> str:
    """The commands and what each does."""
    lines = [f"  {name:9s} {text}" for name, text in COMMANDS.items()]
    return "usage: python -m lib COMMAND ... (python -m lib COMMAND --help for its options)\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"python -m lib: error: {problem}; commands: {', '.join(COMMANDS)} (--help says what each does)",
              file=sys.stderr)
        return 2
    if argv[0] == "data":
        from .cli_data import main as data_main

        return data_main(argv[1:])
    from .cli_experiments import compare_main, energy_main, lifelong_main, reproduce_main, search_main

    commands = {"energy": energy_main, "lifelong": lifelong_main, "reproduce": reproduce_main, "compare": compare_main,
                "search": search_main}
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

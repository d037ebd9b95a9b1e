"""Record the expected smoke-scale outputs of every chapter: ``python -m tests.notebook_reference``.

Each chapter ``book/NN_*.ipynb`` is executed by papermill with ``smoke=True`` and saved as
``tests/notebooks/NN_*.ipynb``. Only the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` are kept:
those are the seeded numbers that nbval (``pytest --nbval-lax``) re-computes and compares.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
REFERENCE = ROOT / "tests" / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"
SMOKE = {"smoke": True}


def chapters() -> list[Path]:
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def code_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Sources of the code cells, without the cell papermill injects."""
    return [
        c.source for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def record(chapter: Path) -> Path:
    import papermill

    from lib.cache import ENV_VAR

    os.environ[ENV_VAR] = tempfile.mkdtemp(prefix="presyn-smoke-results-")  # smoke runs stay out of results/
    REFERENCE.mkdir(exist_ok=True)
    target = REFERENCE / chapter.name
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / chapter.name
        papermill.execute_notebook(str(chapter), str(executed), parameters=SMOKE, cwd=str(REFERENCE), progress_bar=False)
        nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.lstrip().startswith(CHECK):
            cell.outputs = []
            cell.execution_count = None  # nbval treats a cell with a count as one whose outputs count
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, target)
    return target


def main(argv: list[str]) -> int:
    selected = [c for c in chapters() if not argv or any(a in c.name for a in argv)]
    for chapter in selected:
        print(f"recorded {record(chapter).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

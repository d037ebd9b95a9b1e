"""Every chapter has a parameters cell and an up-to-date smoke reference that nbval re-executes.

The references in ``tests/notebooks/`` are collected by nbval (``--nbval-lax``): every cell runs, and
cells marked ``# NBVAL_CHECK_OUTPUT`` must print what they printed when recorded.
"""
import ast

import nbformat
import pytest

from tests.notebook_reference import CHECK, REFERENCE, chapters, code_cells

CHAPTERS = chapters()


def test_the_book_has_chapters():
    assert [c.name for c in CHAPTERS][:1] == ["01_model.ipynb"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_a_parameters_cell_with_smoke(chapter):
    nb = nbformat.read(chapter, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    names = {t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert "smoke" in names
    assert any(c.source.lstrip().startswith(CHECK) for c in nb.cells if c.cell_type == "code")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit chapters without outputs"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_smoke_reference_is_recorded_from_the_current_chapter(chapter):
    reference = REFERENCE / chapter.name
    assert reference.exists(), f"no smoke reference for {chapter.name}; run: make reference"
    ref = nbformat.read(reference, as_version=4)
    assert code_cells(ref) == code_cells(nbformat.read(chapter, as_version=4)), (
        f"{reference} was recorded from another version of {chapter.name}; run: make reference"
    )
    checked = [c for c in ref.cells if c.cell_type == "code" and c.source.lstrip().startswith(CHECK)]
    assert checked and all(c.outputs for c in checked), "checked cells must carry their recorded output"

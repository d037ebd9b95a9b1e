"""Bibliography labels are author-year, as the text cites (_ext/author_year_labels.py)."""
import sys
from pathlib import Path

from pybtex.database import parse_file
from pybtex.plugin import find_plugin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))
import author_year_labels  # noqa: E402

author_year_labels.setup(None)


def test_labels_are_author_year():
    entries = parse_file(ROOT / "references.bib").entries
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    labels = {e.key: e.label for e in style.format_entries(entries.values())}
    assert labels["schug2021presynaptic"] == "Schug et al., 2021"
    assert labels["levy2002energy"] == "Levy and Baxter, 2002"
    assert all("\\" not in label and "{" not in label for label in labels.values())

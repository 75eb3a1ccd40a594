"""benchmarks/RESULTS.md stays a page a user reads; the history lives in dated notes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def test_results_page_is_short_and_links_existing_notes():
    text = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400, "RESULTS.md: put the history in benchmarks/notes/"
    assert text.count("## The machine") == 1  # the machine is described once
    for name in re.findall(r"notes/([\w.-]+\.md)", text):
        assert (BENCH / "notes" / name).is_file(), name


def test_notes_are_dated():
    notes = sorted((BENCH / "notes").glob("*.md"))
    assert notes
    for path in notes:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md", path.name), path.name

"""House rule: modules under 600 lines, classes under 400 (issue 25: split along the seams)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "climgen"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400

# Still being split into the task wings (issue 25, item 1): old and new paths. An entry
# that is no longer over the limit is simply not needed any more; delete it then.
PENDING_MODULES: set[str] = set()
PENDING_CLASSES: set[str] = set()


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_exceeds_600_lines():
    over = {}
    for path in _modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        name = path.relative_to(PACKAGE).as_posix()
        if n > MAX_MODULE_LINES and name not in PENDING_MODULES:
            over[name] = n
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_no_class_exceeds_400_lines():
    over = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name not in PENDING_CLASSES:
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    over[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = n
    assert not over, f"classes over {MAX_CLASS_LINES} lines: {over}"

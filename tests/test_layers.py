"""The architecture's layer rule (arrows point down only), checked with import-linter."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter not installed (pip install 'climgen[dev]')")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_climgen_is_light():
    """`import climgen` must not pull torch/matplotlib: the CLI's --help stays instant."""
    code = "import sys, climgen; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_task_modules_import_no_cycle():
    """No two modules of climgen.tasks import each other, directly or through others (the task
    wings and their shared modules form a tree: a package __init__ does not count)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("climgen")
    tasks = sorted(m for m in graph.modules if m.startswith("climgen.tasks."))
    cycles = []
    for a in tasks:
        for b in graph.find_modules_directly_imported_by(a):
            nested = a.startswith(b + ".") or b.startswith(a + ".")
            if b.startswith("climgen.tasks.") and not nested:
                if graph.chain_exists(importer=b, imported=a):
                    cycles.append((a, *graph.find_shortest_chain(importer=b, imported=a)))
    assert not cycles, f"import cycles: {cycles}"

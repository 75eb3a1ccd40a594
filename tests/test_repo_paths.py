"""No tracked file names a path of one particular machine.

Commands in docs, recipes and benchmarks/RESULTS.md must run from a user's clone: paths are
relative to the repository root (``data/...``, ``runs/...``), never a scratch folder of the
machine that measured them or the checkout's own location. The test lists the tracked files
with ``git ls-files`` (skipped outside a git checkout, e.g. an installed sdist) and fails
naming every file and line that holds such a path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# An absolute path that starts at one of these top folders, not inside a URL or a longer
# path (a URL whose path starts with one of them, or a relative path that holds one, does
# not count). Built from parts so that this file does not match itself.
_TOPS = ("tmp", "work", "home", "Users", "root", "mnt", "scratch", "var/tmp", "var/folders")
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:" + "|".join(_TOPS) + r")/")
WINDOWS_PATH = re.compile(r"(?<![\w])[A-Z]:\\(?:Users|Documents and Settings)\\")


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout: " + out.stderr.strip())
    return [ROOT / name for name in out.stdout.split("\0") if name]


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``text`` that holds a machine path."""
    return [
        (i, line.strip())
        for i, line in enumerate(text.splitlines(), 1)
        if MACHINE_PATH.search(line) or WINDOWS_PATH.search(line)
    ]


def test_pattern_finds_machine_paths_and_spares_relative_ones():
    r, b = "/", "\\"  # built from parts, so that this file holds no such path itself
    bad = [
        f"--json {r}tmp/x.json",
        f"see {r}work/main/benchmarks",
        f"({r}home/user/data.nc)",
        f"`{r}Users/me/run`",
        f"store={r}var{r}tmp{r}s.zarr",
        f"C:{b}Users{b}me{b}data.nc",
    ]
    good = [
        "--json bench.json",
        f"https://example.org{r}work{r}page",
        "data/heldsuarez_seed1.nc",
        f"runs{r}tmp{r}x",
        "../shared/data/file.nc",
        "a ratio 1/tmp",
    ]
    assert [bool(machine_paths(s)) for s in bad] == [True] * len(bad)
    assert [bool(machine_paths(s)) for s in good] == [False] * len(good)


def test_no_tracked_file_holds_a_machine_path():
    hits = []
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary (netCDF, PNG): no text paths
            continue
        rel = path.relative_to(ROOT)
        hits += [f"{rel}:{i}: {line}" for i, line in machine_paths(text)]
    assert not hits, "machine-specific absolute paths in tracked files:\n" + "\n".join(hits)

"""Output paths of the subcommands: never an input, never an existing path without --overwrite.

``climgen fill|downscale|translate|sample|evaluate -o PATH`` call :func:`check_output` before
any work: PATH that is (or lies inside) one of the command's inputs is refused whatever the
flags, since replacing a file that is still being read loses the data; an existing PATH is
refused unless ``--overwrite``. Files are then written to a temporary file in the same folder
and renamed into place (:func:`climgen.data.io.write_fields`), report folders to a temporary
folder beside PATH (:func:`replacing_folder`), so a failure midway leaves the old output intact.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
from pathlib import Path

from climgen.errors import ClimgenInputError

__all__ = ["add_overwrite", "check_output", "replacing_folder"]


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """Add ``--overwrite`` to ``parser``."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT if it exists (an input is never replaced)",
    )


def _existing(spec) -> list[Path]:
    """The existing paths an input argument names (a path, a glob, or nothing)."""
    if spec is None:
        return []
    text = os.fspath(spec)
    if any(c in text for c in "*?["):
        return [Path(p) for p in sorted(glob.glob(text))]
    path = Path(text)
    return [path] if path.exists() else []


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(output, *inputs, overwrite: bool = False, folder: bool = False) -> Path:
    """Refuse ``output`` when it is an input, or exists without ``overwrite``; return it.

    ``inputs``: the command's input paths (files, globs, zarr stores, run directories; None
    entries are skipped). An output equal to an input, or an existing output inside an input
    directory (a run directory's files, a zarr store's chunks), is refused even with
    ``overwrite``. ``folder=True``: the output is a report folder, refused when it is an
    existing file; an existing empty folder is fine.
    """
    out = Path(output)
    for spec in inputs:
        for path in _existing(spec):
            inside = path.is_dir() and out.exists() and path.resolve() in out.resolve().parents
            if _same(out, path) or inside:
                what = "inside the input" if inside else "the input"
                raise ClimgenInputError(
                    f"refusing to write -o {output}: it is {what} {path}; "
                    "choose another output path"
                )
    if folder and out.exists() and not out.is_dir():
        raise ClimgenInputError(
            f"-o {output} is an existing file, not a folder; give a folder for the report"
        )
    if out.exists() and not overwrite and not (folder and not any(out.iterdir())):
        raise ClimgenInputError(
            f"-o {output} already exists; pass --overwrite to replace it, or choose "
            "another output path"
        )
    return out


@contextlib.contextmanager
def replacing_folder(folder: Path):
    """Yield a temporary folder beside ``folder``; on success it replaces ``folder``.

    On an error the temporary folder is removed and ``folder`` is left as it was.
    """
    folder = Path(folder)
    if not folder.parent.exists():
        raise ClimgenInputError(f"cannot write '{folder}': folder '{folder.parent}' does not exist")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    trash = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if folder.exists():
            os.replace(folder, trash)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)

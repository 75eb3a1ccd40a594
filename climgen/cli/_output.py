"""Output paths of the subcommands: never an input, never an existing path without --overwrite.

``climgen fill|downscale|translate|sample|evaluate -o PATH`` call :func:`check_output` before
any work: PATH that is (or lies inside) one of the command's inputs is refused whatever the
flags, since replacing a file that is still being read loses the data; an existing PATH is
refused unless ``--overwrite``. Files are then written to a temporary file in the same folder
and renamed into place (:func:`climgen.data.io.write_fields`), report folders to a temporary
folder beside PATH (:func:`climgen.data.outputs.replacing_folder`, shared with the Python
API), so a failure midway leaves the old output intact.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from climgen.errors import ClimgenInputError

# climgen.data.outputs is imported inside the functions: importing any climgen.data module
# runs climgen.data's __init__, which loads torch, and `climgen --help` must stay instant.

__all__ = ["add_overwrite", "check_output"]


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


def _run_output(out: Path, folder: Path) -> bool:
    """Whether ``out`` is one of a run directory's own outputs (:data:`RUN_OUTPUTS`), directly
    in ``folder``: written by the run's recipe, read by no command."""
    from climgen.data.outputs import RUN_OUTPUTS

    return (
        folder.suffix != ".zarr"
        and out.name in RUN_OUTPUTS
        and out.resolve().parent == folder.resolve()
    )


def check_output(output, *inputs, overwrite: bool = False, folder: bool = False) -> Path:
    """Refuse ``output`` when it is an input, or exists without ``overwrite``; return it.

    ``inputs``: the command's input paths (files, globs, zarr stores, run directories; None
    entries are skipped). An output equal to an input, or an existing output inside an input
    directory (a run directory's files, a zarr store's chunks), is refused even with
    ``overwrite``, except a run's own outputs (:data:`~climgen.data.outputs.RUN_OUTPUTS`:
    ``RUN/samples.nc``, ``RUN/report``), which ``overwrite`` replaces. ``folder=True``: the
    output is a report folder, refused when it is an existing file; an existing empty folder
    is fine.
    """
    from climgen.data.outputs import RUN_OUTPUTS, refuse_existing

    out = Path(output)
    for spec in inputs:
        for path in _existing(spec):
            if _same(out, path):
                raise ClimgenInputError(
                    f"refusing to write -o {output}: it is the input {path}; "
                    "choose another output path"
                )
            inside = path.is_dir() and out.exists() and path.resolve() in out.resolve().parents
            if inside and not _run_output(out, path):
                raise ClimgenInputError(
                    f"refusing to write -o {output}: it is inside the input {path}, whose "
                    "files the command reads (a run's weights, template and statistics, a "
                    "zarr store's chunks), so even --overwrite does not replace it; write "
                    f"elsewhere, e.g. -o {out.name}. Only a run's own outputs "
                    f"({', '.join(RUN_OUTPUTS)}) may be replaced with --overwrite"
                )
    refuse_existing(
        out, overwrite=overwrite, folder=folder, label=f"-o {output}", how="pass --overwrite"
    )
    return out

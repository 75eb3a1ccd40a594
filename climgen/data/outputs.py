"""Output paths shared by the command line and the Python API: never an existing path
without an explicit overwrite, and written beside then renamed into place.

- :func:`refuse_existing` — one :class:`~climgen.errors.ClimgenInputError` naming the path
  when it exists and ``overwrite`` is off (an existing empty folder is fine for a folder
  output; an existing *file* is never replaced by a folder).
- :func:`replacing_folder` — write a folder into a temporary folder beside it, renamed into
  place on success, so a failure midway leaves the old one intact (files:
  :func:`climgen.data.io.write_fields`).

``climgen ... -o PATH --overwrite`` (:mod:`climgen.cli._output`) and
``EvaluationReport.to_html(path, overwrite=...)`` use both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from climgen.errors import ClimgenInputError

__all__ = ["RUN_OUTPUTS", "refuse_existing", "replacing_folder"]

# What a run directory holds for its user, written by the recipes (``climgen train``) and read
# by no loader: ``-o RUN/samples.nc --overwrite`` may replace these, never the run's other
# files (weights, template.nc, climatology.nc, normaliser and card), which a command reads.
RUN_OUTPUTS = ("samples.nc", "samples_raw.nc", "report", "report-raw")


def refuse_existing(
    path,
    *,
    overwrite: bool,
    folder: bool = False,
    label: str | None = None,
    how: str = "pass overwrite=True",
) -> Path:
    """Raise when ``path`` exists and may not be replaced; return it as a Path.

    ``folder=True``: the output is a folder, refused when ``path`` is an existing file (even
    with ``overwrite``); an existing empty folder is fine. ``label`` names the path in the
    message (default ``'path'``), ``how`` says how to allow replacing it.
    """
    out = Path(path)
    label = label or f"'{path}'"
    if folder and out.exists() and not out.is_dir():
        raise ClimgenInputError(
            f"{label} is an existing file, not a folder; give a folder for the report"
        )
    if out.exists() and not overwrite and not (folder and not any(out.iterdir())):
        raise ClimgenInputError(
            f"{label} already exists; {how} to replace it, or choose another output path"
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

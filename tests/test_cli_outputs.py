"""Issue 24 item 2: ``-o PATH`` never replaces an input, nor an existing path without
--overwrite, and a failure while writing leaves the old output intact."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _digest(path: Path) -> str:
    if path.is_dir():
        return "".join(_digest(p) for p in sorted(path.rglob("*")) if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    from climgen.tasks.emulate.emulator import Emulator
    from climgen.tasks.translate.translator import Translator

    d = tmp_path_factory.mktemp("outputs")
    obs = grf_dataarray(3, 8, 16, kind="latlon", seed=0, name="tas", units="K")
    mask = xr.ones_like(obs.isel(time=0, drop=True), dtype=np.int8).rename("mask")
    mask[:, ::3] = 0
    write_fields(obs.where(mask > 0).to_dataset(), d / "obs.nc")
    write_fields(mask.to_dataset(), d / "mask.nc")
    write_fields(grf_dataarray(2, 8, 8, seed=1, name="u").to_dataset(), d / "coarse.nc")
    write_fields(grf_dataarray(16, 24, 40, seed=2, name="v").to_dataset(), d / "gen.nc")
    write_fields(grf_dataarray(16, 24, 40, seed=3, name="v").to_dataset(), d / "ref.nc")
    a = grf_dataarray(16, 8, 16, seed=4, name="t")
    Translator(method="quantile-mapping").fit(
        a.to_dataset(), (a * 2).to_dataset(), run_dir=d / "qm"
    )
    write_fields(a.to_dataset(), d / "a.nc")
    Emulator("vae", latent_dim=2, base_channels=2).fit(
        grf_dataarray(8, 8, 8, seed=5, name="psi"),
        run_dir=d / "em",
        max_steps=1,
        batch_size=4,
        progress=False,
    )
    return d


def _commands(d: Path) -> dict[str, list[str]]:
    """Each subcommand with -o left for the test to add."""
    return {
        "fill": ["fill", "nearest", str(d / "obs.nc"), "--mask", str(d / "mask.nc")],
        "downscale": ["downscale", "bicubic", str(d / "coarse.nc"), "--factor", "2"],
        "translate": ["translate", str(d / "qm"), str(d / "a.nc")],
        "sample": ["sample", str(d / "em"), "-n", "2"],
        "evaluate": ["evaluate", str(d / "gen.nc"), str(d / "ref.nc"), "-q"],
    }


# (subcommand, the input that -o names): run directories' files count as inputs.
_INPUTS = [
    ("fill", "obs.nc"),
    ("fill", "mask.nc"),
    ("downscale", "coarse.nc"),
    ("translate", "a.nc"),
    ("translate", "qm/quantiles.npz"),
    ("sample", "em/normalizer.json"),
    ("sample", "em"),
    ("evaluate", "gen.nc"),
    ("evaluate", "ref.nc"),
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("command, target", _INPUTS)
def test_output_onto_an_input_is_refused_and_the_input_kept(d, capsys, command, target, overwrite):
    before = _digest(d / target)
    argv = [*_commands(d)[command], "-o", str(d / target)] + (["--overwrite"] * overwrite)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "refusing to write" in err and target.split("/")[0] in err
    assert _digest(d / target) == before


@pytest.mark.parametrize("command", ["fill", "downscale", "translate", "sample", "evaluate"])
def test_existing_output_needs_overwrite(d, tmp_path, capsys, command):
    out = tmp_path / ("report" if command == "evaluate" else "out.nc")
    if command == "evaluate":
        out.mkdir()
        (out / "index.html").write_text("old report")
    else:
        out.write_bytes(b"old contents")
    before = _digest(out)
    assert main([*_commands(d)[command], "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and str(out) in err
    assert _digest(out) == before
    assert main([*_commands(d)[command], "-o", str(out), "--overwrite"]) == 0
    if command == "evaluate":
        assert "old report" not in (out / "index.html").read_text()
        assert (out / "metrics.json").exists()
    else:
        assert xr.open_dataset(out).data_vars  # a netCDF file now
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_evaluate_onto_an_existing_file_is_one_error(d, tmp_path, capsys):
    out = tmp_path / "report.html"
    out.write_text("not a folder")
    assert main([*_commands(d)["evaluate"], "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "existing file" in err and str(out) in err and "Traceback" not in err
    assert out.read_text() == "not a folder"


def test_evaluate_into_an_existing_empty_folder_needs_no_flag(d, tmp_path):
    (tmp_path / "r").mkdir()
    assert main([*_commands(d)["evaluate"], "-o", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").exists()


def test_a_failure_while_writing_leaves_the_old_output(d, tmp_path, monkeypatch):
    out = tmp_path / "out.nc"
    out.write_bytes(b"old contents")
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text("old report")

    def disk_full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", disk_full)
    with pytest.raises(OSError, match="No space"):
        main([*_commands(d)["downscale"], "-o", str(out), "--overwrite"])
    assert out.read_bytes() == b"old contents"

    from climgen.report import html

    def broken(report, figures, path):
        Path(path).write_text("half")
        raise OSError("No space left on device")

    monkeypatch.setattr(html, "render_html", broken)
    with pytest.raises(OSError, match="No space"):
        main([*_commands(d)["evaluate"], "-o", str(report), "--overwrite"])
    assert (report / "index.html").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc", "report"]


def test_report_to_html_refuses_an_existing_path_unless_overwrite(d, tmp_path):
    """The Python API as the CLI: one error naming the path, ``overwrite=True`` replaces."""
    from climgen.report.evaluate import evaluate

    report = evaluate(str(d / "gen.nc"), str(d / "ref.nc"), progress=False)
    file = tmp_path / "report.html"
    file.write_text("not a folder")
    for overwrite in (False, True):
        with pytest.raises(ClimgenInputError, match=re.escape(f"'{file}' is an existing file")):
            report.to_html(file, overwrite=overwrite)
    assert file.read_text() == "not a folder"
    old = tmp_path / "rep"
    old.mkdir()
    (old / "index.html").write_text("old report")
    with pytest.raises(ClimgenInputError, match=re.escape(f"'{old}' already exists; pass ove")):
        report.to_html(old)
    assert (old / "index.html").read_text() == "old report"
    assert report.to_html(old, overwrite=True) == old / "index.html"
    assert "old report" not in (old / "index.html").read_text()
    assert (old / "metrics.json").exists() and list(old.glob("*.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "report.html"]  # no temporaries


def test_a_runs_own_samples_may_be_replaced_with_overwrite(d, capsys):
    """RUN/samples.nc (written by `climgen train`, read by no command) is no input: replaced
    with --overwrite; the run's other files stay refused, and the error says why."""
    samples = d / "em" / "samples.nc"
    samples.write_bytes(b"old samples")
    try:
        argv = [*_commands(d)["sample"], "-o", str(samples)]
        assert main(argv) == 2
        assert "already exists; pass --overwrite" in capsys.readouterr().err
        assert main([*argv, "--overwrite"]) == 0
        assert xr.open_dataset(samples).sizes["sample"] == 2
    finally:
        samples.unlink()
    before = _digest(d / "em")
    assert main([*_commands(d)["sample"], "-o", str(d / "em" / "template.nc"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "whose files the command reads" in err and "-o template.nc" in err
    assert _digest(d / "em") == before

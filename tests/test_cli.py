"""The command line: climgen evaluate / demo, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from climgen.cli import main
from climgen.data.samples import grf_dataarray

REPO = Path(__file__).resolve().parents[1]
N, NY, NX = 16, 24, 40


def _write(path, seed, slope=-3.0, **kw):
    da = grf_dataarray(N, NY, NX, slope=slope, seed=seed, name="v", units="K", **kw)
    da.to_dataset().to_netcdf(path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "ref": _write(d / "ref.nc", 0),
        "same": _write(d / "same.nc", 1),
        "wrong": _write(d / "wrong.nc", 2, slope=-2.0),
        "dir": d,
    }


def _metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def test_evaluate_writes_report(files, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["evaluate", files["wrong"], files["ref"], "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert (out / "index.html").exists()
    # maps, spectrum, PDF, structure functions, Minkowski curves, band spectra
    assert len(list(out.glob("*.png"))) == 6
    data = _metrics(out)
    assert {"matches", "factor", "provenance", "variables"} <= set(data)
    spectrum = data["variables"]["v"]["distances"]["spectrum_lsd"]
    assert spectrum["status"] == "differs" and "differs" in spectrum["verdict"]
    assert data["matches"] is False


def test_evaluate_train_adds_reference_rows(files, tmp_path, capsys):
    out = tmp_path / "rep"
    args = ["evaluate", files["same"], files["ref"], "-o", str(out), "--train", files["wrong"]]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "surrogate (IAAFT)" in printed and "memorisation ratio" in printed
    var = _metrics(out)["variables"]["v"]
    assert set(var["reference_rows"]) == {"training data", "surrogate (IAAFT)"}
    assert set(var["reference_rows"]["training data"]) == set(var["distances"])
    # the training set (slope −2) differs from the reference in its spectrum, like its surrogate
    for row in var["reference_rows"].values():
        assert row["spectrum_lsd"]["status"] == "differs"
    assert "Reference rows" in (out / "index.html").read_text()


def test_evaluate_same_distribution_matches_on_spectrum(files, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["evaluate", files["same"], files["ref"], "-o", str(out), "--variables", "v"]) == 0
    printed = capsys.readouterr().out
    assert "spectrum_lsd" in printed and "overall:" in printed  # the summary table
    spectrum = _metrics(out)["variables"]["v"]["distances"]["spectrum_lsd"]
    assert spectrum["status"] == "matches"


def test_max_samples(files, tmp_path):
    out = tmp_path / "rep"
    assert (
        main(["evaluate", files["same"], files["ref"], "-o", str(out), "-q", "--max-samples", "8"])
        == 0
    )
    assert _metrics(out)["variables"]["v"]["n_reference"] == 8


@pytest.mark.slow
def test_python_m_climgen_subprocess(files, tmp_path):
    out = tmp_path / "rep"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "climgen",
            "evaluate",
            files["wrong"],
            files["ref"],
            "-o",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").exists() and (out / "metrics.json").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "climgen", "evaluate", "missing.nc", files["ref"], "-o", "x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("climgen: error:") and "missing.nc" in bad.stderr
    assert "Traceback" not in bad.stderr


def _error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("climgen: error:") and "Traceback" not in err
    return err


def test_mismatched_grid_exit_2(files, tmp_path, capsys):
    da = grf_dataarray(N, NY, NX + 2, seed=3, name="v", units="K")
    path = tmp_path / "wide.nc"
    da.to_dataset().to_netcdf(path)
    err = _error(["evaluate", str(path), files["ref"], "-o", str(tmp_path / "r")], capsys)
    assert "'x'" in err and str(NX + 2) in err


def test_missing_variable_exit_2(files, tmp_path, capsys):
    err = _error(
        [
            "evaluate",
            files["same"],
            files["ref"],
            "-o",
            str(tmp_path / "r"),
            "--variables",
            "v",
            "tas",
        ],
        capsys,
    )
    assert "'tas'" in err


def test_nan_exit_2(files, tmp_path, capsys):
    da = grf_dataarray(N, NY, NX, seed=3, name="v", units="K")
    da.values[2, 5, 5] = np.nan
    path = tmp_path / "nan.nc"
    da.to_dataset().to_netcdf(path)
    err = _error(["evaluate", str(path), files["ref"], "-o", str(tmp_path / "r")], capsys)
    assert "'v'" in err and "1 NaN" in err


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--synthetic",
            "-o",
            str(out),
            "--samples",
            "16",
            "--size",
            "24",
            "40",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    index = out / "report" / "index.html"
    assert str(index) in printed and "overall: differs" in printed
    assert (out / "generated.nc").exists() and (out / "reference.nc").exists()
    data = _metrics(out / "report")
    assert data["variables"]["tracer"]["distances"]["spectrum_lsd"]["status"] == "differs"
    assert data["variables"]["tracer"]["shape"] == [24, 40]


def test_trained_demo_on_bundled_data(tmp_path, capsys):
    """The default demo: train on the bundled RBC sample, sample, report vs held-out data."""
    import torch

    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    # A CPU budget of 1 s ends training long before --steps; the thread count is restored.
    assert main(["demo", "-o", str(out), "--steps", "1000", "--budget", "1", "-q"]) == 0
    assert torch.get_num_threads() == threads
    steps = [int(p.name.split("_")[-1]) for p in (out / "checkpoints").glob("step_*")]
    assert steps and max(steps) < 1000
    data = _metrics(out / "report")
    assert data["variables"]["b"]["shape"] == [32, 128]
    assert (out / "samples.nc").exists() and (out / "checkpoints").is_dir()
    # Calibrated by default, with the raw model reported beside it.
    assert (out / "spectral_calibration.json").exists()
    raw = _metrics(out / "report-raw")
    assert raw["variables"]["b"]["shape"] == [32, 128]
    assert raw != data
    # One reference, one set of reference rows: measured once, the same on both pages.
    raw_b, cal_b = raw["variables"]["b"], data["variables"]["b"]
    assert raw_b["reference_rows"] == cal_b["reference_rows"] != {}
    assert raw_b["memorisation"]["surrogate (IAAFT)"] == cal_b["memorisation"]["surrogate (IAAFT)"]
    assert [d["floor"] for d in raw_b["distances"].values()] == [
        d["floor"] for d in cal_b["distances"].values()
    ]


def test_demo_rejects_too_few_samples(tmp_path, capsys):
    err = _error(["demo", "--synthetic", "-o", str(tmp_path), "--samples", "2"], capsys)
    assert "--samples" in err


def test_demo_rejects_a_negative_budget(tmp_path, capsys):
    assert "--budget" in _error(["demo", "-o", str(tmp_path), "--budget", "-1"], capsys)


@pytest.mark.parametrize("sub", ["evaluate", "demo"])
def test_help_has_examples(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_demo_help_describes_the_default_mode_first(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    default = text.index("Train a small emulator")
    assert default < text.index("With --synthetic") < text.index("examples:")
    assert text.index("[--steps N]") < text.index("[--synthetic]") < text.index("[--samples N]")


def test_one_module_per_subcommand_and_one_dispatch():
    """Every subcommand's module sets func=run, has no main() of its own, and the package's
    docstring names it."""
    import climgen.cli as cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.SUBCOMMANDS)
    for name, module in cli.SUBCOMMANDS.items():
        assert module.__name__ == f"climgen.cli.{name}"
        assert sub.choices[name].get_default("func") is module.run
        assert not hasattr(module, "main")
        assert f"``{name}" in cli.__doc__


def test_every_subcommand_has_quiet(tmp_path, capsys):
    """-q everywhere; with it, downscale prints the output path and nothing else."""
    import climgen.cli as cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        flags = {s for a in parser._actions for s in a.option_strings}
        if name == "data":  # its solvers are subcommands of their own
            inner = next(a for a in parser._actions if a.dest and a.choices)
            flags = set.intersection(
                *({s for a in p._actions for s in a.option_strings} for p in inner.choices.values())
            )
        assert {"-q", "--quiet"} <= flags, name
    coarse = grf_dataarray(2, 8, 16, kind="latlon", name="tas", units="K")
    coarse.to_dataset().to_netcdf(tmp_path / "c.nc")
    out = tmp_path / "f.nc"
    argv = ["downscale", "bicubic", str(tmp_path / "c.nc"), "-o", str(out), "--factor", "2"]
    assert main([*argv, "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and captured.err == ""


def test_training_stopped_by_a_signal_exits_128_plus_signum(monkeypatch, capsys):
    """The dispatch turns TrainingInterrupted into the shell's exit status; other errors
    (bugs) keep their traceback."""
    import signal

    import climgen.cli.train as train_command
    from climgen.train import TrainingInterrupted

    def stopped(args):
        raise TrainingInterrupted(signal.SIGTERM, 7, None)

    monkeypatch.setattr(train_command, "run", stopped)
    assert main(["train", "recipe.yaml"]) == 128 + signal.SIGTERM
    assert "after step 7" in capsys.readouterr().err

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(train_command, "run", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "recipe.yaml"])


def test_help_imports_no_heavy_module():
    """`climgen --help` and `climgen SUBCOMMAND --help` stay instant: no torch, no task wing."""
    code = (
        "import sys\n"
        "from climgen.cli import SUBCOMMANDS, main\n"
        "for argv in [['--help']] + [[name, '--help'] for name in SUBCOMMANDS]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('torch', 'matplotlib', 'xarray', 'climgen.tasks', 'climgen.train')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_no_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("climgen ")
    assert main([]) == 2


def test_translate_command_with_quantile_mapping(tmp_path, capsys):
    """`climgen translate` applies a fitted translator from its run directory."""
    import numpy as np
    import xarray as xr

    from climgen.data.io import write_fields
    from climgen.data.samples import grf_dataarray
    from climgen.tasks.translate.translator import Translator

    a = grf_dataarray(64, 8, 16, seed=0, name="t") * 2.0 + 1.0
    b = grf_dataarray(64, 8, 16, seed=1, name="t")
    Translator(method="quantile-mapping").fit(
        a.to_dataset(), b.to_dataset(), run_dir=tmp_path / "qm"
    )
    write_fields(a.to_dataset(), tmp_path / "a.nc")
    assert (
        main(
            [
                "translate",
                str(tmp_path / "qm"),
                str(tmp_path / "a.nc"),
                "-o",
                str(tmp_path / "out.nc"),
            ]
        )
        == 0
    )
    out = xr.open_dataset(tmp_path / "out.nc")["t"]
    assert abs(float(out.mean())) < 0.2 and abs(float(out.std()) - 1.0) < 0.2
    assert np.isfinite(out).all()
    assert (
        main(
            [
                "translate",
                str(tmp_path / "nothing"),
                str(tmp_path / "a.nc"),
                "-o",
                str(tmp_path / "x.nc"),
            ]
        )
        == 2
    )


def test_chunked_evaluate_gives_the_in_memory_spectral_distance(files, tmp_path):
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    args = ["evaluate", files["wrong"], files["ref"], "-q", "-o"]
    assert main([*args, str(whole)]) == 0
    assert main([*args, str(chunked), "--chunk-size", "7"]) == 0
    a = _metrics(whole)["variables"]["v"]["distances"]["spectrum_lsd"]["value"]
    b = _metrics(chunked)["variables"]["v"]["distances"]["spectrum_lsd"]["value"]
    assert b == pytest.approx(a, rel=1e-6)

"""Atomic, code-free checkpoints: safetensors weights + a JSON model card + trainer state.

Layout of ``run_dir/checkpoints/``::

    step_0000020/            one directory per checkpoint, named by completed steps
        model.safetensors    the family's weights (all sub-networks, buffers included)
        ema.safetensors      EMA weights of family.ema_module() (when EMA is on)
        card.json            model card: family, config, step, versions, caller extras,
                             SHA-256 and size of every file above
        trainer_state.pt     optimisers, AMP scalers, RNG states, sampler position, EMA count
    latest                   text file: name of the newest complete checkpoint
    best                     text file: name of the checkpoint a callback marked best

Atomicity: a checkpoint is written into a hidden temporary directory beside its target and
renamed into place with ``os.replace`` (atomic on POSIX), so a ``step_*`` directory is always
complete; the pointer files are replaced the same way. A crash mid-write leaves the previous
checkpoint and pointers untouched. Weights load without executing code (safetensors, JSON);
``trainer_state.pt`` is read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_model

from climgen.errors import ClimgenInputError

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_trainer_state",
    "load_family",
    "find_latest_valid",
    "best_pointer",
    "list_checkpoints",
    "verify_checkpoint",
    "mark_best",
    "checkpoint_dir",
    "clean_temporaries",
    "load_weights_into",
    "export_checkpoint",
    "base_card",
]

FORMAT = "climgen-checkpoint"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"
LOGGER = logging.getLogger(__name__)


class CheckpointError(ClimgenInputError):
    """A checkpoint that is missing, truncated, corrupt or otherwise unreadable."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights (name → tensor) and model card; trainer state on demand."""

    path: Path
    step: int
    card: dict
    weights: dict[str, torch.Tensor]
    ema_weights: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def trainer_state(self, map_location="cpu") -> dict:
        return load_trainer_state(self.path, map_location=map_location)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def _step_name(step: int) -> str:
    return f"step_{int(step):07d}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_pointer(path: Path, name: str) -> None:
    """Atomically make the text file ``path`` contain ``name``."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _read_pointer(path: Path) -> str | None:
    try:
        name = path.read_text().strip()
    except OSError:
        return None
    return name if _STEP_DIR.match(name) else None


def _remove_dir(path: Path) -> None:
    """Remove a directory so that no half-deleted ``step_*`` ever exists: rename first."""
    trash = path.with_name(f"{_TMP_PREFIX}del-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def clean_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete leftovers of interrupted writes (hidden ``.tmp-*`` entries)."""
    ck = checkpoint_dir(run_dir)
    if not ck.is_dir():
        return
    for entry in ck.iterdir():
        if entry.name.startswith(_TMP_PREFIX):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete-by-name checkpoint directories, oldest first (not verified)."""
    ck = checkpoint_dir(run_dir)
    if not ck.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ck.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def _json_ready(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ClimgenInputError(
            f"model card entry {where!r} is not JSON-serialisable: {exc}"
        ) from None


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: torch.nn.Module,
    card: dict,
    trainer_state: dict | None = None,
    ema_model: torch.nn.Module | None = None,
    keep_last: int | None = 3,
    best: bool = False,
) -> Path:
    """Write checkpoint ``step`` atomically and update the ``latest`` (and ``best``) pointers.

    ``card`` is the model card (JSON-serialisable); ``step``, the file checksums and
    ``format`` keys are added. Afterwards only the newest ``keep_last`` checkpoints are kept,
    plus the one ``best`` points to. Returns the checkpoint directory.
    """
    ck = checkpoint_dir(run_dir)
    ck.mkdir(parents=True, exist_ok=True)
    name = _step_name(step)
    final = ck / name
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=ck))
    try:
        save_model(model, str(tmp / "model.safetensors"), force_contiguous=True)
        if ema_model is not None:
            save_model(ema_model, str(tmp / "ema.safetensors"), force_contiguous=True)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer_state.pt")
        files = {}
        for f in sorted(tmp.iterdir()):
            _fsync_file(f)
            files[f.name] = {"sha256": _sha256(f), "bytes": f.stat().st_size}
        full_card = _json_ready(
            {
                **card,
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "step": int(step),
                "files": files,
            },
            "card",
        )
        with open(tmp / "card.json", "w") as f:
            json.dump(full_card, f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # re-written step (e.g. a resumed run that never got further)
            _remove_dir(final)
        os.replace(tmp, final)
        _fsync_dir(ck)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_pointer(ck / "latest", name)
    if best:
        _write_pointer(ck / "best", name)
    if keep_last is not None:
        _prune(run_dir, keep_last)
    return final


def mark_best(run_dir: str | os.PathLike, path: str | os.PathLike) -> None:
    """Point ``best`` at the checkpoint directory ``path`` (kept by pruning from then on)."""
    _write_pointer(checkpoint_dir(run_dir) / "best", Path(path).name)


def _prune(run_dir, keep_last: int) -> None:
    ck = checkpoint_dir(run_dir)
    protected = {_read_pointer(ck / "best"), _read_pointer(ck / "latest")}
    existing = list_checkpoints(run_dir)
    for path in existing[: max(len(existing) - keep_last, 0)]:
        if path.name not in protected:
            _remove_dir(path)


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Check a checkpoint directory is complete and intact; returns its card.

    Raises :class:`CheckpointError` naming the file at fault (missing, truncated, or a
    SHA-256 that differs from the one recorded in ``card.json`` at write time).
    """
    path = Path(path)
    card_path = path / "card.json"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: card.json is missing or corrupt ({exc})"
        ) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: card.json is not a climgen checkpoint card")
    files = card.get("files") or {}
    if "model.safetensors" not in files:
        raise CheckpointError(f"checkpoint {path}: card.json lists no model.safetensors")
    for fname, meta in files.items():
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(f"checkpoint {path}: {fname} is missing")
        size = fpath.stat().st_size
        if size != meta.get("bytes"):
            raise CheckpointError(
                f"checkpoint {path}: {fname} has {size} bytes, expected {meta.get('bytes')} "
                "(truncated or partially written)"
            )
        if _sha256(fpath) != meta.get("sha256"):
            raise CheckpointError(
                f"checkpoint {path}: {fname} does not match its recorded SHA-256 (corrupt)"
            )
    return card


def find_latest_valid(run_dir: str | os.PathLike, *, warn: bool = True) -> Path:
    """The newest intact checkpoint of ``run_dir``: ``latest`` if valid, else older ones.

    A fallback past corrupt or incomplete checkpoints is logged as a warning (logger
    ``climgen.train.checkpoint``) naming the step it falls back to and why the newer ones
    were skipped. Raises :class:`CheckpointError` when there is none.
    """
    ck = checkpoint_dir(run_dir)
    candidates = list(reversed(list_checkpoints(run_dir)))
    pointed = _read_pointer(ck / "latest")
    if pointed is not None:
        candidates.sort(key=lambda p: p.name != pointed)  # stable: pointer target first
    problems = []
    for path in candidates:
        try:
            verify_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems and warn:
            LOGGER.warning(
                "climgen: warning: falling back to checkpoint step %d (%s); skipped %d "
                "unusable newer checkpoint(s): %s",
                int(_STEP_DIR.match(path.name).group(1)),
                path,
                len(problems),
                "; ".join(problems),
            )
        return path
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"no valid checkpoint in {ck}{detail}")


def best_pointer(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint the ``best`` pointer of ``run_dir`` names (None when there is none)."""
    name = _read_pointer(checkpoint_dir(run_dir) / "best")
    return checkpoint_dir(run_dir) / name if name else None


def _resolve(path_or_run_dir: str | os.PathLike, which: str) -> Path:
    path = Path(path_or_run_dir)
    if (path / "card.json").exists() or _STEP_DIR.match(path.name):
        return path
    run_dir = path.parent if path.name == "checkpoints" else path
    if which == "best":
        best = best_pointer(run_dir)
        if best is None:
            raise CheckpointError(f"{run_dir} has no 'best' checkpoint")
        return best
    if which != "latest":
        raise ClimgenInputError(f"which must be 'latest' or 'best', got {which!r}")
    return find_latest_valid(run_dir)


def load_checkpoint(path_or_run_dir: str | os.PathLike, *, which: str = "latest") -> Checkpoint:
    """Load the weights and model card of a checkpoint directory or of a run directory.

    A run directory (or its ``checkpoints/``) resolves to its latest *valid* checkpoint
    (``which="latest"``, falling back past corrupt ones) or to ``best``. An explicit
    checkpoint directory that is corrupt raises :class:`CheckpointError` naming the file and
    the previous valid checkpoint, if any. Nothing is unpickled.
    """
    path = _resolve(path_or_run_dir, which)
    try:
        card = verify_checkpoint(path)
    except CheckpointError as exc:
        hint = ""
        try:
            fallback = find_latest_valid(path.parent.parent, warn=False)
            if fallback != path:
                hint = f"; the newest valid checkpoint is {fallback}"
        except CheckpointError:
            pass
        raise CheckpointError(f"{exc}{hint}") from None
    weights = load_file(str(path / "model.safetensors"))
    ema = path / "ema.safetensors"
    ema_weights = load_file(str(ema)) if ema.exists() else None
    return Checkpoint(
        path=path, step=int(card["step"]), card=card, weights=weights, ema_weights=ema_weights
    )


def load_trainer_state(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read ``trainer_state.pt`` with ``torch.load(weights_only=True)`` (no arbitrary code)."""
    fpath = Path(path) / "trainer_state.pt"
    if not fpath.is_file():
        raise CheckpointError(f"checkpoint {path} has no trainer_state.pt (weights-only)")
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for disallowed objects, RuntimeError if corrupt
        raise CheckpointError(
            f"{fpath} could not be loaded with torch.load(weights_only=True): {exc}"
        ) from exc


def load_weights_into(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    ema: bool = False,
    device: str | torch.device = "cpu",
) -> None:
    """Load ``model.safetensors`` (or ``ema.safetensors``) of checkpoint ``path`` into module."""
    fname = Path(path) / ("ema.safetensors" if ema else "model.safetensors")
    if not fname.is_file():
        raise CheckpointError(f"checkpoint {path} has no {fname.name}")
    device = torch.device(device)
    try:
        load_model(module, str(fname), strict=True, device=str(device))
    except RuntimeError as exc:  # missing/unexpected keys or other shapes: another architecture
        raise CheckpointError(
            f"checkpoint {path} does not fit this {type(module).__name__}: "
            f"{_architecture_difference(Path(path), module, fname) or exc}. Resume (or load) "
            "with the options it was trained with, or start a new run directory"
        ) from None


def _architecture_difference(path: Path, module: torch.nn.Module, fname: Path) -> str:
    """The family options that differ from the checkpoint's card, else the first tensors
    whose names or shapes differ."""
    try:
        saved = json.loads((path / "card.json").read_text()).get("config") or {}
    except (OSError, ValueError):
        saved = {}
    now = _json_ready(dict(getattr(module, "config", {}) or {}), "config") if saved else {}
    options = [
        f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in sorted(set(saved) | set(now))
        if saved.get(k) != now.get(k)
    ]
    if options:
        return "options differ (" + "; ".join(options[:5]) + ")"
    stored = {k: tuple(v.shape) for k, v in load_file(str(fname)).items()}
    current = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    tensors = [
        f"{k}: {stored.get(k, 'absent')} in the checkpoint, {current.get(k, 'absent')} now"
        for k in sorted(set(stored) | set(current))
        if stored.get(k) != current.get(k)
    ]
    return "tensors differ (" + "; ".join(tensors[:3]) + ")" if tensors else ""


def load_family(
    path_or_run_dir: str | os.PathLike,
    *,
    which: str = "latest",
    ema: bool = True,
    device: str | torch.device = "cpu",
):
    """Rebuild the family of a checkpoint from its card and load its weights.

    ``ema=True`` puts the EMA weights (when the checkpoint has them) into
    ``family.ema_module()``. Returns ``(family, checkpoint)``; the family is in eval mode.
    """
    from climgen.families.base import build_family

    ckpt = load_checkpoint(path_or_run_dir, which=which)
    family = build_family(ckpt.card["family"], **ckpt.card.get("config", {}))
    load_weights_into(family, ckpt.path, device=device)
    if ema and ckpt.ema_weights is not None and family.ema_module() is not None:
        load_weights_into(family.ema_module(), ckpt.path, ema=True, device=device)
    return family.to(device).eval(), ckpt


def export_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    family: torch.nn.Module,
    dest_run_dir: str | os.PathLike,
    *,
    extras: dict | None = None,
    edit_card: Callable[[dict], dict] | None = None,
) -> Path:
    """Write checkpoint ``step`` of ``run_dir`` as the only checkpoint of ``dest_run_dir``,
    slimmed to what sampling needs: ``family``'s current weights in ``model.safetensors`` (the
    EMA average when the family was loaded with ``ema=True``), no ``ema.safetensors``, no
    trainer state. The card is that checkpoint's card passed through ``edit_card`` (if
    given), plus ``exported`` = {"from_step", **extras}.
    """
    card = verify_checkpoint(checkpoint_dir(run_dir) / _step_name(step))
    card = {k: v for k, v in card.items() if k not in ("format", "format_version", "files")}
    if edit_card is not None:
        card = edit_card(card)
    card["exported"] = _json_ready({"from_step": int(step), **(extras or {})}, "exported")
    return save_checkpoint(dest_run_dir, int(step), model=family, card=card, keep_last=1)


def base_card(family, *, step: int, extras: dict | None = None) -> dict:
    """The fixed part of a model card: family name and options, versions, creation time."""
    from climgen import __version__

    card = {
        "family": getattr(family, "name", type(family).__name__),
        "config": _json_ready(dict(getattr(family, "config", {}) or {}), "family.config"),
        "step": int(step),
        "climgen_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in (extras or {}).items():
        if key in card or key in ("format", "format_version", "files"):
            raise ClimgenInputError(f"model card extra {key!r} clashes with a reserved key")
        card[key] = _json_ready(value, key)
    return card

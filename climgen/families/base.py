"""The contract between generative families and the trainer, and the family registry.

A *family* is a ``torch.nn.Module`` holding its network(s), its loss and its sampler. The one
trainer (:mod:`climgen.train`) drives every family through this contract:

- ``optimizer_groups()`` → ``{name: OptimizerSpec}``: which parameters each optimiser updates
  (one group ``"main"`` for AE/VAE/flows/diffusion; ``"generator"`` and ``"discriminator"`` for
  GANs). The trainer builds the optimisers (and AMP scalers) from these specs.
- ``training_step(batch, step, ctx)`` → ``{loss_name: float tensor}``: computes the losses and
  calls ``ctx.step(loss, group)`` for each update it wants (a GAN may update the discriminator
  n_critic times, then the generator). ``ctx.step`` does backward, AMP unscale, gradient
  clipping, the optimiser step and zero_grad; the family never calls ``optimizer.step()``.
  Returned tensors are detached scalars for logging; the trainer checks them for NaN/inf.
- ``sample(n, generator=None)`` → tensor (n, C, H, W) in normalised units.
- ``ema_module()`` → the sub-module whose weights the trainer averages (generator / decoder),
  or ``None``.
- ``config`` → JSON-serialisable dict of the constructor options (stored in the model card so
  that ``build_family(name, **config)`` rebuilds the same architecture).

:class:`FamilyModule` implements the parts every family shares (``config`` from the
constructor's arguments, one Adam group or a generator/critic pair, ``ema_module``); the
families subclass it.

Batches are dicts: ``{"x": (B, C, H, W) float tensor, "mask": optional (B, 1|C, H, W)}``.
Spatial periodicity is passed to constructors as ``periodic=(periodic_y, periodic_x)``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from climgen.errors import ClimgenInputError

__all__ = [
    "OptimizerSpec",
    "StepContext",
    "Family",
    "FamilyModule",
    "register_family",
    "build_family",
    "check_family_options",
    "check_grid_options",
    "available_families",
]


@dataclass
class OptimizerSpec:
    """Parameters of one optimiser group and how to optimise them.

    ``kind`` names an optimiser: "adam", "adamw", "rmsprop", "sgd", or a two-player
    optimiser from :mod:`climgen.train.two_player` ("optimistic-adam", "extragradient").
    """

    params: list[torch.nn.Parameter]
    lr: float = 2e-4
    kind: str = "adam"
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class StepContext(Protocol):
    """What the trainer hands to ``training_step``."""

    device: torch.device

    def step(self, loss: torch.Tensor, group: str) -> None:
        """Backward ``loss`` and update the parameters of optimiser ``group``."""

    def game_step(self, group: str, loss_min: torch.Tensor, loss_max: torch.Tensor) -> None:
        """Joint update of a two-player group (``kind="cgd"``): the optimiser receives both
        players' losses (e.g. competitive gradient descent needs mixed second derivatives)."""

    def autocast(self):
        """Context manager for mixed precision of the forward pass (no-op on CPU)."""


@runtime_checkable
class Family(Protocol):
    name: str
    config: dict

    def optimizer_groups(self) -> dict[str, OptimizerSpec]: ...

    def training_step(
        self, batch: dict, step: int, ctx: StepContext
    ) -> dict[str, torch.Tensor]: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def ema_module(self) -> torch.nn.Module | None: ...


def _scalar(value, kind: str):
    """``value`` as the scalar type ``kind`` names, where the family constructors convert too:
    a float option takes any real number or numeric string ("1e-4" from YAML); an int option
    an integer (not a bool or a float: the constructor's own check still sees those); a bool
    option a number."""
    try:
        if kind == "float" and isinstance(value, (numbers.Real, str)):
            return float(value)
        if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if kind == "bool" and isinstance(value, numbers.Number):
            return bool(value)
    except ValueError:  # a non-numeric string: left for the constructor's check to name
        pass
    return value


def _stored(value, annotation: str):
    """``value`` in its JSON form: sequences → lists, numbers → the annotated scalar type
    ("float", "int | None", "tuple[float, float]", …); anything else as given."""
    if isinstance(value, (tuple, list)):
        inner = (
            annotation[annotation.find("[") + 1 : annotation.rfind("]")]
            if "[" in annotation
            else ""
        )
        return [_stored(v, inner.split(",")[0].strip()) for v in value]
    parts = [part.strip() for part in annotation.split("|")]
    kinds = [k for k in parts if k in ("int", "float", "bool")]
    if len(kinds) != 1 or (isinstance(value, str) and "str" in parts):
        return value
    return _scalar(value, kinds[0])


# The least value of each integer option that is a size or a count of parts (a network of
# 0 channels or a diffusion of 0 steps fails inside torch, or not at all); other integer
# options (optional channels, warm-up steps, depths that may be 0) take any integer ≥ 0.
INT_OPTION_MINIMUM: dict[str, int] = {
    **dict.fromkeys(
        (
            "channels", "base_channels", "hidden_channels", "disc_channels", "max_channels",
            "latent_dim", "encoder_features", "min_bottleneck", "n_blocks", "num_res_blocks",
            "num_levels", "levels", "steps_per_level", "n_layers", "kernel_size",
            "first_kernel", "mixtures", "mixture_components", "sample_steps",
            "n_critic", "factor", "covariance_patch",
        ),
        1,
    ),
    "bins": 2,
    "num_steps": 2,
    "crps_members": 2,
}  # fmt: skip


def _check_number(family: str, name: str, value, annotation: str) -> None:
    """A ``float`` option must hold a real number (a learning rate ``lr``/``lr_*`` a finite
    one > 0), an ``int`` option (or ``int | None`` other than None) an integer ≥ its
    minimum (:data:`INT_OPTION_MINIMUM`: 1 for sizes such as ``base_channels``, else 0),
    else one error naming the option: text, a zero or a negative size in a recipe would
    otherwise surface as a traceback from torch."""
    if annotation in ("int", "int | None") and not (annotation != "int" and value is None):
        integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        least = INT_OPTION_MINIMUM.get(name, 0)
        if not integer or value < least:
            raise ClimgenInputError(
                f"{family} option '{name}' must be an integer ≥ {least}, got {value!r}"
            )
        return
    if annotation != "float":
        return
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number:
        raise ClimgenInputError(
            f"{family} option '{name}' must be a number, got {value!r} ({type(value).__name__})"
        )
    if (name == "lr" or name.startswith("lr_")) and not (math.isfinite(value) and value > 0):
        raise ClimgenInputError(
            f"{family} option '{name}' is a learning rate: it must be a finite number > 0, "
            f"got {value!r}"
        )


class FamilyModule(nn.Module):
    """The parts of the family contract every family shares; families subclass it.

    - :meth:`record_config` sets ``config`` from the constructor's ``locals()``: every
      constructor parameter, in its JSON form (tuples → lists, numbers → the annotated type).
      Call it once the constructor has checked and normalised its arguments.
    - :meth:`optimizer_groups`: one Adam group "main" over all parameters, β = (0.9, 0.999),
      learning rate ``self.lr``; adversarial families return :meth:`adversarial_groups`.
    - :meth:`ema_module`: the sub-module named by the class attribute ``ema_attr`` (the one
      sampling uses), or the whole family when ``ema_attr`` is empty.
    - :meth:`_check_field`: the shape check of an input field batch (needs ``channels`` and
      ``shape`` attributes).
    """

    name = "family"
    ema_attr = ""
    lr: float

    def record_config(self, values: dict, **stored) -> dict:
        """``self.config`` = the constructor parameters read from ``values`` (its ``locals()``),
        JSON-ready; ``stored`` gives the stored form of options the constructor rewrote under
        another name (e.g. ``value_range=[lo, hi]``)."""
        config = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self":
                continue
            value = stored[name] if name in stored else values[name]
            config[name] = _stored(value, str(param.annotation))
            _check_number(type(self).__name__, name, config[name], str(param.annotation))
        self.config = config
        return config

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        """One Adam group "main" over all parameters (lr from the ``lr`` option)."""
        return {
            "main": OptimizerSpec(
                list(self.parameters()), lr=float(self.lr), kind="adam", betas=(0.9, 0.999)
            )
        }

    @staticmethod
    def adversarial_groups(
        generators: Iterable[nn.Module],
        critics: Iterable[nn.Module],
        *,
        lr: float,
        lr_d: float,
        loss: str | None,
        kind: str = "adam",
    ) -> dict[str, OptimizerSpec]:
        """Groups "generator" and "discriminator" (learning rates ``lr``, ``lr_d``).

        β = (0, 0.9) for the WGAN-GP loss (Gulrajani et al. 2017), else (0.5, 0.999) (Radford
        et al. 2016).
        """
        betas = (0.0, 0.9) if loss == "wgan-gp" else (0.5, 0.999)
        g = [p for m in generators for p in m.parameters()]
        d = [p for m in critics for p in m.parameters()]
        return {
            "generator": OptimizerSpec(g, lr=lr, kind=kind, betas=betas),
            "discriminator": OptimizerSpec(d, lr=lr_d, kind=kind, betas=betas),
        }

    def ema_module(self) -> nn.Module:
        """The sub-module the trainer averages (``ema_attr``; the whole family if empty)."""
        return getattr(self, self.ema_attr) if self.ema_attr else self

    def _check_field(self, x, what: str = "batch['x']") -> torch.Tensor:
        """``x`` if it is a (B, channels, H, W) tensor on the family's grid, else one error
        naming ``what``, the expected shape and the family."""
        expected = (self.channels, *self.shape)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ClimgenInputError(
                f"{what} must be a tensor of shape (B, {', '.join(map(str, expected))}) for "
                f"family {self.name!r}, got {got}"
            )
        return x


def check_grid_options(channels, shape, periodic=(False, True)) -> None:
    """Validate the options every family constructor shares; errors name the option."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ClimgenInputError(f"option 'channels' must be a positive int, got {channels!r}")
    if len(shape) != 2 or any(int(s) < 1 for s in shape):
        raise ClimgenInputError(f"option 'shape' must be (H, W) > 0, got {shape!r}")
    if len(periodic) != 2:
        raise ClimgenInputError(
            f"option 'periodic' must be (periodic_y, periodic_x), got {periodic!r}"
        )


_REGISTRY: dict[str, Callable[..., torch.nn.Module]] = {}


def register_family(name: str):
    """Class decorator: make a family buildable by name (recipes, CLI, ``Emulator``)."""

    def wrap(cls):
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtin_families() -> None:
    # Importing the modules runs their @register_family decorators.
    import importlib

    for module in (
        "climgen.families.vae",
        "climgen.families.gan",
        "climgen.families.flow",
        "climgen.families.pixelcnn",
        "climgen.families.diffusion",
        "climgen.families.superres",
        "climgen.families.infill",
        "climgen.families.translation",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a family not written yet
            if exc.name != module:
                raise


def available_families() -> list[str]:
    """Names accepted by ``build_family`` / ``Emulator(family=...)``."""
    _load_builtin_families()
    return sorted(_REGISTRY)


def check_family_options(name: str, options: dict) -> type:
    """The class registered as ``name``, after checking ``options`` are its constructor's.

    Unknown names and unknown options give a :class:`ClimgenInputError` listing the choices
    (recipes call this before any data is read).
    """
    import inspect

    _load_builtin_families()
    if name not in _REGISTRY:
        raise ClimgenInputError(
            f"unknown family {name!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        )
    cls = _REGISTRY[name]
    accepted = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ClimgenInputError(
                f"family {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(sorted(accepted))}"
            )
    for key, value in options.items():  # before the constructor builds layers of that size
        if key in accepted:
            annotation = str(accepted[key].annotation)
            _check_number(name, key, _stored(value, annotation), annotation)
    return cls


def build_family(name: str, **options) -> torch.nn.Module:
    """Instantiate the family registered as ``name`` with constructor ``options``.

    Unknown names and unknown options give a :class:`ClimgenInputError` listing the choices.
    """
    return check_family_options(name, options)(**options)

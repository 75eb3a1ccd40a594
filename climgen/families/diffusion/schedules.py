"""Noise schedules: discrete DDPM β schedules (linear, cosine) and the EDM σ schedule.

Two views of the same forward process, both used by the samplers:

- **Variance preserving (DDPM)**, discrete steps t = 0, …, T−1:
  ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε``, ε ~ N(0, I), with ᾱ_t = Π_{s≤t} (1 − β_s).
- **Variance exploding (EDM)**, continuous noise level σ ≥ 0: ``x = x_0 + σ n``, n ~ N(0, I).

They are related by ``x_t / √ᾱ_t = x_0 + σ_t ε`` with ``σ_t = √((1 − ᾱ_t) / ᾱ_t)``, so a model
trained in one view can be sampled in the other (:mod:`.denoisers`).

The interfaces are :class:`typing.Protocol` classes (:class:`DiscreteSchedule`,
:class:`SigmaSchedule`, :class:`Preconditioner`), so losses and samplers depend on what a
schedule does, not on which class it is. Tables are kept in float64 on the CPU and moved to
the input's device/dtype when used.

References
----------
Ho, Jain & Abbeel (2020), *Denoising diffusion probabilistic models*, NeurIPS (linear β).
Nichol & Dhariwal (2021), *Improved denoising diffusion probabilistic models*, ICML (cosine).
Karras, Aittala, Aila & Laine (2022), *Elucidating the design space of diffusion-based
generative models*, NeurIPS (EDM: σ discretisation, preconditioning, loss weighting).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

from climgen.errors import ClimgenInputError

__all__ = [
    "BETA_SCHEDULES",
    "DiscreteSchedule",
    "SigmaSchedule",
    "Preconditioner",
    "linear_betas",
    "cosine_betas",
    "DDPMSchedule",
    "EDMSchedule",
]

BETA_SCHEDULES = ("linear", "cosine")


@runtime_checkable
class DiscreteSchedule(Protocol):
    """A discrete variance-preserving schedule with ``num_steps`` = T steps.

    ``alphas_cumprod``: (T,) float64 tensor of ᾱ_t, strictly decreasing in t.
    """

    num_steps: int
    alphas_cumprod: torch.Tensor

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ_t for integer steps ``t`` (B,) → (B,)."""

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``√ᾱ_t x0 + √(1−ᾱ_t) noise``; x0, noise (B, C, H, W), t (B,) → (B, C, H, W)."""


@runtime_checkable
class SigmaSchedule(Protocol):
    """Noise levels for a few-step sampler in the σ (variance-exploding) view."""

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """(num_steps + 1,) float64: σ_0 > σ_1 > … > σ_{N−1} > σ_N = 0."""


@runtime_checkable
class Preconditioner(Protocol):
    """Scalings of the EDM denoiser ``D(x; σ) = c_skip x + c_out F(c_in x, c_noise)``."""

    sigma_data: float

    def precondition(
        self, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise), each with the shape of ``sigma`` (e.g. (B,))."""


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear β schedule of Ho et al. (2020), (T,) float64.

    β runs linearly from ``beta_start`` to ``beta_end`` scaled by 1000/T, so that any T
    reproduces the T = 1000 schedule's total noise (Nichol & Dhariwal 2021, their code).
    """
    scale = 1000.0 / num_steps
    return torch.linspace(
        scale * beta_start, min(scale * beta_end, 0.999), num_steps, dtype=torch.float64
    )


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. 17, (T,) float64.

    .. math::
        \\bar\\alpha(\\tau) = \\frac{f(\\tau)}{f(0)}, \\quad
        f(\\tau) = \\cos^2\\Big(\\frac{\\tau + s}{1 + s}\\cdot\\frac{\\pi}{2}\\Big),\\quad
        \\beta_t = \\min\\Big(1 - \\frac{\\bar\\alpha((t+1)/T)}{\\bar\\alpha(t/T)},
        \\ \\beta_{max}\\Big)

    so step t (0-based) has ᾱ_t = ᾱ((t+1)/T) until β reaches the clip ``max_beta`` near t = T.
    """
    tau = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


class DDPMSchedule:
    """Discrete variance-preserving schedule (implements :class:`DiscreteSchedule`).

    Parameters
    ----------
    num_steps : T, the number of diffusion steps (1000 in DDPM).
    kind : "cosine" (default; keeps more signal at mid t, better for few steps) or "linear".

    Attributes ``betas``, ``alphas_cumprod`` (ᾱ_t) and ``sigmas`` (σ_t = √((1−ᾱ_t)/ᾱ_t), the
    equivalent variance-exploding noise level) are (T,) float64 tensors.
    """

    def __init__(self, num_steps: int = 1000, kind: str = "cosine"):
        if not isinstance(num_steps, int) or num_steps < 2:
            raise ClimgenInputError(f"option 'num_steps' must be an int ≥ 2, got {num_steps!r}")
        if kind not in BETA_SCHEDULES:
            raise ClimgenInputError(
                f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}"
            )
        self.num_steps, self.kind = num_steps, kind
        self.betas = linear_betas(num_steps) if kind == "linear" else cosine_betas(num_steps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def __repr__(self) -> str:
        return f"DDPMSchedule(num_steps={self.num_steps}, kind={self.kind!r})"

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ_t for integer steps ``t`` (any shape, values in [0, T)) in float64."""
        return self.alphas_cumprod[torch.as_tensor(t).long().cpu()]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) given the noise: (B, …), t (B,)."""
        a = self.alpha_bar(t).to(x0.device, x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def timestep_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional step t(σ) with σ_t = σ, by linear interpolation in log σ (clamped).

        Lets a network trained on integer steps be queried at any noise level (Karras et
        al. 2022, Table 1, VP column: c_noise = (M − 1) σ⁻¹(σ)).
        """
        log_table = self.sigmas.log()
        log_s = torch.as_tensor(sigma, dtype=torch.float64).cpu().log()
        log_s = log_s.clamp(log_table[0], log_table[-1])
        hi = torch.searchsorted(log_table, log_s).clamp(1, self.num_steps - 1)
        lo = hi - 1
        frac = (log_s - log_table[lo]) / (log_table[hi] - log_table[lo])
        return (lo + frac).to(torch.as_tensor(sigma).device)

    def timesteps(self, num: int | None = None, max_sigma: float | None = None) -> torch.Tensor:
        """``num`` integer steps spread evenly over [0, t_max], descending, t_max first, 0 last.

        ``t_max`` = T − 1, or with ``max_sigma`` the last step with σ_t ≤ ``max_sigma``. The
        cosine schedule ends at ᾱ_{T−1} ~ 1e-9 (σ ~ 2·10⁴), where x̂_0 = (x − √(1−ᾱ) ε̂)/√ᾱ
        amplifies any error of a learned ε̂ ~10⁴-fold; starting at σ_t ≈ 80 instead changes
        the initial distribution N(0, I) by a relative variance of 1/σ² ≈ 2·10⁻⁴ only.
        ``num`` = None: every step up to t_max.
        """
        t_max = self.num_steps - 1
        if max_sigma is not None:
            t_max = max(int((self.sigmas <= max_sigma).sum()) - 1, 0)
        num = t_max + 1 if num is None else int(num)
        if not 1 <= num <= t_max + 1:
            raise ClimgenInputError(
                f"number of sampling steps must be in [1, {t_max + 1}], got {num}"
            )
        steps = torch.linspace(t_max, 0, num, dtype=torch.float64).round().long()
        return torch.unique_consecutive(steps)


class EDMSchedule:
    """The EDM noise levels, preconditioning and training distribution (Karras et al. 2022).

    Implements :class:`SigmaSchedule` and :class:`Preconditioner`.

    - Sampling levels (eq. 5, ρ = 7):
      ``σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, i < N, and σ_N = 0.
    - Preconditioning (Table 1), with σ_d the data standard deviation:
      ``c_skip = σ_d² / (σ² + σ_d²)``, ``c_out = σ σ_d / √(σ² + σ_d²)``,
      ``c_in = 1 / √(σ² + σ_d²)``, ``c_noise = ¼ ln σ``.
      They make the network's input and training target both unit-variance.
    - Training: ``ln σ ~ N(P_mean, P_std²)`` and loss weight
      ``λ(σ) = (σ² + σ_d²) / (σ σ_d)²`` = 1 / c_out², so every σ contributes a unit-scale loss.
    """

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        sigma_data: float = 1.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ):
        if not 0 < sigma_min < sigma_max:
            raise ClimgenInputError(
                f"options need 0 < sigma_min < sigma_max, got {sigma_min!r}, {sigma_max!r}"
            )
        if sigma_data <= 0 or p_std <= 0 or rho <= 0:
            raise ClimgenInputError(
                f"options 'sigma_data', 'p_std', 'rho' must be > 0, got "
                f"{sigma_data!r}, {p_std!r}, {rho!r}"
            )
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)

    def __repr__(self) -> str:
        return (
            f"EDMSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
            f"rho={self.rho}, sigma_data={self.sigma_data})"
        )

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """(num_steps + 1,) float64 levels σ_max = σ_0 > … > σ_{N−1} = σ_min, then σ_N = 0."""
        if num_steps < 1:
            raise ClimgenInputError(f"number of sampling steps must be ≥ 1, got {num_steps}")
        if num_steps == 1:
            return torch.tensor([self.sigma_max, 0.0], dtype=torch.float64)
        i = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
        inv_rho = 1.0 / self.rho
        s_max, s_min = self.sigma_max**inv_rho, self.sigma_min**inv_rho
        levels = (s_max + i * (s_min - s_max)) ** self.rho
        return torch.cat([levels, levels.new_zeros(1)])

    def precondition(
        self, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma`` (any shape, σ > 0)."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        c_skip = sd2 / total
        c_out = sigma * self.sigma_data / total.sqrt()
        c_in = 1 / total.sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ(σ) = (σ² + σ_d²) / (σ σ_d)²."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def sample_training_sigma(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``n`` log-normal training levels ln σ ~ N(P_mean, P_std²), shape (n,)."""
        gen_device = generator.device if generator is not None else device
        z = torch.randn(n, generator=generator, device=gen_device, dtype=dtype)
        return (self.p_mean + self.p_std * z).exp().to(device)

"""Two-player optimisers for GANs: optimistic Adam, extra-Adam, competitive gradient descent.

GAN training is a game, not a minimisation: simultaneous gradient descent–ascent cycles or
diverges even on the bilinear game min_x max_y x·y, while these methods converge there.

- :class:`OptimisticAdam` (Daskalakis, Ilyas, Syrgkanis & Zeng 2018, *Training GANs with
  optimism*): θ_{t+1} = θ_t − 2η u_t + η u_{t−1}, with u_t the Adam direction m̂_t/(√v̂_t + ε).
- :class:`ExtraAdam` (Gidel, Berard, Vignoud, Vincent & Lacoste-Julien 2019, *A variational
  inequality perspective on GANs*): extrapolate θ_{t+½} = θ_t − η u(θ_t), then update
  θ_{t+1} = θ_t − η u(θ_{t+½}) with the gradient taken at the extrapolated point.
- :class:`CompetitiveGradientDescent` (Schäfer & Anandkumar 2019, *Competitive gradient
  descent*): the Nash equilibrium of the local bilinear approximation of the game, solved with
  conjugate gradients on Hessian-vector products from autograd.

:data:`TWO_PLAYER_OPTIMIZERS` maps ``OptimizerSpec.kind`` names to factories
``factory(spec) -> torch.optim.Optimizer``; they are built into the trainer's optimiser
registry (:func:`climgen.train.context.build_optimizer`), so a family names them by kind
(e.g. "optimistic-adam", "extragradient") without importing ``climgen.train``.
"""

from __future__ import annotations

import torch

from climgen.errors import ClimgenInputError
from climgen.families.base import OptimizerSpec

__all__ = [
    "OptimisticAdam",
    "ExtraAdam",
    "CompetitiveGradientDescent",
    "TWO_PLAYER_OPTIMIZERS",
]


def _adam_direction(p: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    """Update the Adam moments of ``p`` with its gradient and return m̂/(√v̂ + ε)."""
    beta1, beta2 = group["betas"]
    grad = p.grad
    if group["weight_decay"]:
        grad = grad.add(p, alpha=group["weight_decay"])
    if "step" not in state:
        state["step"] = torch.zeros((), dtype=torch.float64)
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
    state["step"] += 1
    t = float(state["step"])
    state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    m_hat = state["exp_avg"] / (1 - beta1**t)
    v_hat = state["exp_avg_sq"] / (1 - beta2**t)
    return m_hat / (v_hat.sqrt() + group["eps"])


def _check_adam_args(lr, betas, eps):
    if not lr > 0:
        raise ClimgenInputError(f"learning rate must be positive, got {lr}")
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ClimgenInputError(f"betas must lie in [0, 1), got {betas}")
    if not eps > 0:
        raise ClimgenInputError(f"eps must be positive, got {eps}")


class OptimisticAdam(torch.optim.Optimizer):
    """Optimistic Adam (Daskalakis et al. 2018, Algorithm 1).

    .. math::
        θ_{t+1} = θ_t - 2η\\,u_t + η\\,u_{t-1}, \\qquad
        u_t = \\hat m_t / (\\sqrt{\\hat v_t} + ε)

    with Adam's bias-corrected moments m̂_t, v̂_t (u_0 = 0). The "− previous step" term is
    optimistic mirror descent: it anticipates the opponent's move and damps the rotation of
    simultaneous gradient play. A drop-in ``torch.optim`` optimiser: one ``step()`` per
    backward.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas=(0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        _check_adam_args(lr, betas, eps)
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                u = _adam_direction(p, state, group)
                previous = state.get("previous_direction")
                p.add_(u, alpha=-2 * group["lr"])
                if previous is not None:
                    p.add_(previous, alpha=group["lr"])
                state["previous_direction"] = u
        return loss


class ExtraAdam(torch.optim.Optimizer):
    """Extragradient with Adam directions (Gidel et al. 2019, Algorithm 4, "Extra-Adam").

    .. math::
        θ_{t+1/2} = θ_t - η\\,u(∇ℓ(θ_t)), \\qquad θ_{t+1} = θ_t - η\\,u(∇ℓ(θ_{t+1/2}))

    Adam moments are updated by both half-steps, as in the authors' implementation.

    **One loss per step.** The trainer calls ``step()`` once per backward. With
    ``alternate=True`` (default) calls alternate: odd calls *extrapolate* (remember θ_t,
    move to θ_{t+½}), even calls *update* (go back to θ_t and step with the gradient just
    computed at θ_{t+½}). So two consecutive training steps of a player make one
    extragradient step; in a GAN each player's extrapolation sees the other player's current
    (possibly extrapolated) parameters, as in Gidel et al.'s alternating variant. Call
    :meth:`extrapolation` / :meth:`step` explicitly with ``alternate=False``. The phase and
    the anchor θ_t are kept in the optimiser state (checkpointed and resumed).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas=(0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        alternate: bool = True,
    ):
        _check_adam_args(lr, betas, eps)
        super().__init__(
            params,
            dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, extrapolated=False),
        )
        self.alternate = alternate

    @property
    def extrapolated(self) -> bool:
        """True between an extrapolation and its update."""
        return bool(self.param_groups[0]["extrapolated"])

    @torch.no_grad()
    def extrapolation(self) -> None:
        """Move to θ_{t+½} = θ_t − η u(θ_t), remembering θ_t."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["anchor"] = p.detach().clone()
                if p.grad is not None:
                    p.add_(_adam_direction(p, state, group), alpha=-group["lr"])
            group["extrapolated"] = True

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.alternate and not self.extrapolated:
            self.extrapolation()
            return loss
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                anchor = state.pop("anchor", None)
                if anchor is not None:
                    p.copy_(anchor)
                if p.grad is not None:
                    p.add_(_adam_direction(p, state, group), alpha=-group["lr"])
            group["extrapolated"] = False
        return loss


def _flat(grads, params) -> torch.Tensor:
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]
    )


def _unflat(vec: torch.Tensor, params):
    out, i = [], 0
    for p in params:
        out.append(vec[i : i + p.numel()].view_as(p))
        i += p.numel()
    return out


class CompetitiveGradientDescent(torch.optim.Optimizer):
    """Competitive gradient descent (Schäfer & Anandkumar 2019, eq. 4) for a two-player game.

    Player x (``min_params``) minimises f = ``loss_min``; player y (``max_params``)
    maximises g = ``loss_max``. Each step plays the Nash equilibrium of the regularised
    bilinear approximation of the game at the current point:

    .. math::
        (I + η^2 D^2_{xy} f\\, D^2_{yx} g)\\, Δx = -η\\,(∇_x f + η\\, D^2_{xy} f\\, ∇_y g),
        \\qquad Δy = η\\,(∇_y g + D^2_{yx} g\\, Δx)

    The linear system is solved by conjugate gradients (``cg_max_iter``, relative tolerance
    ``cg_tol``) with mixed Hessian-vector products from double back-propagation; no matrix
    is formed. For zero-sum games (f = g, e.g. WGAN with f = g_loss and g = −d_loss up to
    terms of one player only) the matrix is I + η² M Mᵀ, symmetric positive definite, and CG
    is exact in exact arithmetic; for general-sum games it is an approximation (the paper
    uses GMRES there). Use through ``ctx.game_step(group, loss_min, loss_max)``:
    :meth:`step` takes both losses and computes its own gradients. One learning rate η.
    """

    def __init__(
        self, min_params, max_params, lr: float = 1e-3, cg_max_iter: int = 16, cg_tol: float = 1e-6
    ):
        if not lr > 0:
            raise ClimgenInputError(f"learning rate must be positive, got {lr}")
        super().__init__(
            [
                {"params": list(min_params), "player": "min"},
                {"params": list(max_params), "player": "max"},
            ],
            dict(lr=lr),
        )
        self.cg_max_iter, self.cg_tol = int(cg_max_iter), float(cg_tol)
        self.last_cg_iterations = 0

    def _conjugate_gradient(self, apply_a, b: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = r.dot(r)
        threshold = (self.cg_tol**2) * rs
        self.last_cg_iterations = 0
        for _ in range(self.cg_max_iter):
            if rs <= threshold or rs == 0:
                break
            ap = apply_a(p)
            alpha = rs / p.dot(ap)
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = r.dot(r)
            p = r + (rs_new / rs) * p
            rs = rs_new
            self.last_cg_iterations += 1
        return x

    def step(self, loss_min: torch.Tensor, loss_max: torch.Tensor):  # type: ignore[override]
        xs = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        ys = [p for p in self.param_groups[1]["params"] if p.requires_grad]
        eta = self.param_groups[0]["lr"]
        grad = torch.autograd.grad
        gf = grad(loss_min, xs + ys, create_graph=True, allow_unused=True)
        gg = grad(loss_max, xs + ys, create_graph=True, allow_unused=True)
        gx_f, gy_f = gf[: len(xs)], gf[len(xs) :]
        gx_g, gy_g = gg[: len(xs)], gg[len(xs) :]
        gx_f_vec = _flat(gx_f, xs).detach()
        gy_g_vec = _flat(gy_g, ys).detach()
        gy_f_vec = _flat(gy_f, ys)
        gx_g_vec = _flat(gx_g, xs)

        def d_xy_f(v_y: torch.Tensor) -> torch.Tensor:  # D²_xy f · v  (over x)
            if not gy_f_vec.requires_grad:
                return torch.zeros_like(gx_f_vec)
            return _flat(grad(gy_f_vec, xs, v_y, retain_graph=True, allow_unused=True), xs)

        def d_yx_g(v_x: torch.Tensor) -> torch.Tensor:  # D²_yx g · v  (over y)
            if not gx_g_vec.requires_grad:
                return torch.zeros_like(gy_g_vec)
            return _flat(grad(gx_g_vec, ys, v_x, retain_graph=True, allow_unused=True), ys)

        b = -eta * (gx_f_vec + eta * d_xy_f(gy_g_vec))
        dx = self._conjugate_gradient(lambda u: u + eta**2 * d_xy_f(d_yx_g(u)), b.detach())
        dy = eta * (gy_g_vec + d_yx_g(dx))
        with torch.no_grad():
            for p, d in zip(xs, _unflat(dx.detach(), xs)):
                p.add_(d)
            for p, d in zip(ys, _unflat(dy.detach(), ys)):
                p.add_(d)
        return loss_min.detach()


def _optimistic_adam(spec: OptimizerSpec) -> OptimisticAdam:
    return OptimisticAdam(
        spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **spec.extra
    )


def _extra_adam(spec: OptimizerSpec) -> ExtraAdam:
    return ExtraAdam(
        spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **spec.extra
    )


def _cgd(spec: OptimizerSpec) -> CompetitiveGradientDescent:
    extra = dict(spec.extra)
    try:
        min_params, max_params = extra.pop("min_params"), extra.pop("max_params")
    except KeyError:
        raise ClimgenInputError(
            "optimizer kind 'cgd' needs OptimizerSpec.extra['min_params'] and "
            "extra['max_params'] (the minimising and maximising players' parameters)"
        ) from None
    return CompetitiveGradientDescent(min_params, max_params, lr=spec.lr, **extra)


TWO_PLAYER_OPTIMIZERS = {
    "optimistic-adam": _optimistic_adam,
    "extragradient": _extra_adam,
    "cgd": _cgd,
}

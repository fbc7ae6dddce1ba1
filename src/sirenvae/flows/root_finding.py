r"""Root finding for transforms whose inverse is a fixed point, :math:`y = z + g(z)`.

The Newton-like iteration uses the exact diagonal of the Jacobian (MintNet),

.. math:: z \leftarrow z - \frac{z + g(z) - y}{1 + \mathrm{diag}\, \partial g / \partial z},

from :math:`z = y`, keeping the diagonal of the last evaluation while the residual falls fast (a chord
step); plain Banach iteration :math:`z \leftarrow y - g(z)` is the fallback. Gradients
through the solution follow the implicit function theorem.

References:
    | MintNet: Building Invertible Neural Networks with Masked Convolutions (Song et al., 2019)
    | https://arxiv.org/abs/1907.07945
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ConvergenceError", "InverseResult", "RootFinding", "fixed_point", "implicit_gradient"]

OnFail = Literal["raise", "warn"]
Method = Literal["newton", "banach"]

#: Newton reuses its Jacobian diagonal while the residual falls at least this much per iteration.
CHORD_RATE = 0.1

#: ``g(z, diag) -> (g(z), diag ∂g/∂z or None)``
Residual = Callable[[Tensor, bool], tuple[Tensor, Tensor | None]]


class ConvergenceError(RuntimeError):
    """The fixed-point inverse did not reach its tolerance within ``max_iter`` iterations."""


@dataclass(frozen=True, kw_only=True)
class RootFinding:
    r"""How an inverse is solved.

    Attributes:
        atol, rtol: Stop when :math:`|z + g(z) - y| \le \mathrm{atol} + \mathrm{rtol} |y|` everywhere;
            ``rtol`` defaults to four machine epsilons of the dtype.
        max_iter: The most iterations.
        method: ``newton`` (diagonal Newton, MintNet) or ``banach`` (:math:`z \leftarrow y - g(z)`).
        on_fail: ``raise`` a :class:`ConvergenceError` or ``warn`` when the tolerance is not reached.
    """

    atol: float = 1e-6
    rtol: float | None = None
    max_iter: int = 50
    method: Method = "newton"
    on_fail: OnFail = "raise"

    def __post_init__(self) -> None:
        if self.method not in ("newton", "banach"):
            raise ValueError(f"method must be 'newton' or 'banach', got {self.method!r}")
        if self.on_fail not in ("raise", "warn"):
            raise ValueError(f"on_fail must be 'raise' or 'warn', got {self.on_fail!r}")
        if self.max_iter < 0 or not self.atol >= 0:
            raise ValueError(f"max_iter and atol must be non-negative, got {self.max_iter} and {self.atol}")


@dataclass(frozen=True)
class InverseResult:
    """The outcome of inverting a transform.

    Attributes:
        z: The solution.
        iterations: Iterations used by each step, in the order they were solved (last step first).
        residual: The largest :math:`|z + g(z) - y|` left in any step.
        converged: Whether every step reached the tolerance.
    """

    z: Tensor
    iterations: tuple[int, ...]
    residual: float
    converged: bool

    def then(self, other: InverseResult) -> InverseResult:
        """This result followed by ``other`` (solved next): ``other``'s solution, both reports."""
        return InverseResult(
            other.z,
            self.iterations + other.iterations,
            max(self.residual, other.residual),
            self.converged and other.converged,
        )

    def check(self, options: RootFinding, what: str) -> None:
        """Raises or warns (as ``options.on_fail`` says) unless the solve converged."""
        if self.converged:
            return
        msg = (
            f"the inverse of {what} did not converge: residual {self.residual:.3g} after "
            f"{sum(self.iterations)} iterations (atol={options.atol}, max_iter={options.max_iter}); "
            "raise max_iter or atol"
        )
        if options.on_fail == "raise":
            raise ConvergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


@torch.no_grad()
def fixed_point(
    g: Residual, y: Tensor, options: RootFinding, chord: bool = True, start: Tensor | None = None
) -> InverseResult:
    r"""Solves :math:`y = z + g(z)` for :math:`z` without gradients; never raises.

    With ``chord``, Newton keeps the Jacobian diagonal of its last evaluation while the residual
    falls at least :data:`CHORD_RATE`-fold per iteration (:math:`g` alone costs about 2/3 of
    :math:`g` with its diagonal), and evaluates it anew otherwise. Without, every step is a full
    Newton step, whose last one usually lands far inside the tolerance. ``start`` is the first
    iterate (:math:`y` by default), e.g. the solution of a nearby problem.
    """
    rtol = 4 * torch.finfo(y.dtype).eps if options.rtol is None else options.rtol
    newton = options.method == "newton"
    tol = options.atol + rtol * y.abs()
    z = y.clone() if start is None else start.clone()
    residual, previous, d = math.inf, math.inf, None
    for it in range(options.max_iter + 1):
        gz, new_d = g(z, newton and (d is None or not chord or residual > CHORD_RATE * previous))
        d = d if new_d is None else new_d
        r = z + gz - y
        previous, residual = residual, r.abs().max().item() if r.numel() else 0.0
        if not math.isfinite(residual):
            return InverseResult(z, (it,), residual, False)
        if bool((r.abs() <= tol).all()):
            return InverseResult(z, (it,), residual, True)
        if it == options.max_iter:
            break
        z = z - r / (1 + d) if newton else y - gz
    return InverseResult(z, (options.max_iter,), residual, False)


def implicit_gradient(
    z: Tensor,
    y: Tensor,
    g: Callable[[Tensor], Tensor],
    g_detached: Callable[[Tensor], tuple[Tensor, Tensor]],
    *,
    atol: float,
    max_sweeps: int,
) -> Tensor:
    r"""Attaches implicit gradients to a solution ``z`` of :math:`y = z + g(z)`.

    The value is :math:`y - g(z)`; its backward maps an incoming gradient :math:`v` to
    :math:`w = (I + J)^{-\top} v`, solved by Jacobi sweeps (exact after depth + 1 sweeps when
    :math:`J` is triangular), so :math:`\partial z / \partial y = (I + J)^{-1}` and
    :math:`\partial z / \partial \theta = -(I + J)^{-1} \partial g / \partial \theta`.

    Arguments:
        z: The solution (detached).
        y: The target, possibly requiring gradients.
        g: :math:`g` with the parameters attached to the graph.
        g_detached: :math:`g` and its Jacobian diagonal with detached parameters and context.
        atol: Stop the sweeps when no component moves by more than this.
        max_sweeps: The most sweeps.
    """
    z0 = z.detach()
    out = y - g(z0)
    if not out.requires_grad:
        return out
    zr = z0.clone().requires_grad_(True)
    with torch.enable_grad():
        gr, dr = g_detached(zr)
    dr = dr.detach()

    def backward(v: Tensor) -> Tensor:
        w = v
        for _ in range(max_sweeps):
            (jtw,) = torch.autograd.grad(gr, zr, w, retain_graph=True)
            w_next = (v - jtw + dr * w) / (1 + dr)
            done = bool(((w_next - w).abs() <= atol).all())
            w = w_next
            if done:
                break
        return w

    out.register_hook(backward)
    return out

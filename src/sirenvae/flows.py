r"""Graphical residual flows (GRF): invertible residual blocks that follow a Bayesian network.

A block maps :math:`z \mapsto y = z + g(z)` (or :math:`z + g(z \oplus c)` with context) where
:math:`g` is an MLP whose masks let :math:`g_i` see only :math:`\{i\} \cup pa(i)`
(:mod:`sirenvae.masks`), spectrally normalised so that :math:`\mathrm{Lip}(g) < 1`. In topological
order the Jacobian is lower triangular, so

.. math:: \log |\det J| = \sum_i \log(1 + \partial g_i / \partial z_i),

computed exactly by carrying one derivative per hidden unit through the blocks of units designated
to the same variable. The inverse solves :math:`y = z + g(z)` with the Newton-like iteration
:math:`z \leftarrow z - (z + g(z) - y) / (1 + \mathrm{diag}\, \partial g / \partial z)` (MintNet), and
gradients through it follow the implicit function theorem.

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
    | MintNet: Building Invertible Neural Networks with Masked Convolutions (Song et al., 2019)
    | https://arxiv.org/abs/1907.07945
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Size, Tensor, nn
from torch.distributions import Distribution, constraints

from sirenvae.masks import graphical_masks
from sirenvae.nn import MaskedLinear
from sirenvae.nn import activation as make_activation

__all__ = [
    "GRF",
    "ConvergenceError",
    "FlowDistribution",
    "GRFBlock",
    "GraphicalResidualFlow",
    "InverseResult",
]

OnFail = Literal["raise", "warn"]
Direction = Literal["normalize", "generate"]
Method = Literal["newton", "banach"]


class ConvergenceError(RuntimeError):
    """The fixed-point inverse did not reach its tolerance within ``max_iter`` iterations."""


@dataclass(frozen=True)
class InverseResult:
    """The outcome of inverting a flow.

    Attributes:
        z: The solution.
        iterations: Iterations used by each block, in the order they were inverted (last block first).
        residual: The largest :math:`|z + g(z) - y|` left in any block.
        converged: Whether every block reached the tolerance.
    """

    z: Tensor
    iterations: tuple[int, ...]
    residual: float
    converged: bool


@dataclass(frozen=True)
class _Prepared:
    """Folded weights and biases, the first layer's diagonal, the diagonal blocks of each later layer
    and the off-diagonal parts of hidden -> hidden layers (``None`` where there are none).
    """

    layers: list[tuple[Tensor, Tensor]]
    delta0: Tensor
    diag_blocks: list[Tensor]
    off: list[Tensor | None]

    def detach(self) -> _Prepared:
        return _Prepared(
            [(W.detach(), b.detach()) for W, b in self.layers],
            self.delta0.detach(),
            [B.detach() for B in self.diag_blocks],
            [None if W is None else W.detach() for W in self.off],
        )


def _check_on_fail(on_fail: str) -> None:
    if on_fail not in ("raise", "warn"):
        raise ValueError(f"on_fail must be 'raise' or 'warn', got {on_fail!r}")


class GRFBlock(nn.Module):
    r"""One graphical residual block :math:`y = z + g(z \oplus c)`.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, ``C[i, j]`` iff context ``j`` is a parent of ``i``.
        hidden_per_set: Hidden units per variable set and hidden layer.
        hidden_layers: The number of hidden layers.
        kappa: The spectral bound of every layer, :math:`0 < \kappa < 1`.
        activation: ``lipswish``, ``elu`` or ``tanh``.
        singletons: Also give each variable hidden units that see only itself.
        n_power_iterations: Power iterations per training step.
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        hidden_per_set: int = 4,
        hidden_layers: int = 2,
        kappa: float = 0.97,
        activation: str = "lipswish",
        singletons: bool = False,
        n_power_iterations: int = 1,
    ) -> None:
        super().__init__()
        if not 0 < kappa < 1:
            raise ValueError(f"kappa must lie in (0, 1) for the block to be invertible, got {kappa}")
        masks = graphical_masks(
            adjacency,
            context_adjacency,
            hidden_per_set=hidden_per_set,
            hidden_layers=hidden_layers,
            singletons=singletons,
        )
        self.features = masks.features
        self.context_features = masks.context
        self.units = masks.units
        # only the first layer sees the context, whose columns stay unbounded
        self.layers = nn.ModuleList(
            MaskedLinear(
                M,
                kappa=kappa,
                n_power_iterations=n_power_iterations,
                bounded_columns=masks.features if l == 0 else None,
            )
            for l, M in enumerate(masks.layers)
        )
        self.activations = nn.ModuleList(make_activation(activation) for _ in range(hidden_layers))
        D, k = self.features, self.units
        self.register_buffer("_designated", torch.arange(D).repeat_interleave(k), persistent=False)
        self._split = hidden_layers >= 2 and self._plan_split(masks.layers[1])
        self._cache: tuple | None = None

    def _plan_split(self, mask: Tensor) -> bool:
        """Plans hidden -> hidden layers as diagonal blocks plus off-diagonal block rows/columns.

        Units of one designated variable form ``k x k`` diagonal blocks (a batched matmul); the few
        blocks between different variables are gathered into one small dense matmul. Returns False
        (plain dense matmuls) when the off-diagonal part is not much smaller than the whole.
        """
        D, k = self.features, self.units
        blocks = mask.view(D, k, D, k).any(dim=(1, 3))
        blocks.fill_diagonal_(False)
        rows = torch.nonzero(blocks.any(dim=1)).flatten()
        cols = torch.nonzero(blocks.any(dim=0)).flatten()
        if rows.numel() * cols.numel() > 0.25 * D * D:
            return False
        units = torch.arange(k)
        r = (rows[:, None] * k + units).flatten()
        c = (cols[:, None] * k + units).flatten()
        off = mask & ~torch.block_diag(*([torch.ones(k, k, dtype=torch.bool)] * D))
        self.register_buffer("_off_rows", r, persistent=False)
        self.register_buffer("_off_cols", c, persistent=False)
        self.register_buffer("_off_mask", off[r][:, c], persistent=False)
        return True

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights."""
        return int(sum(int(layer.mask.sum()) for layer in self.layers))

    def prepare(self, update: bool | None = None) -> _Prepared:
        """Everything :meth:`g` needs from the parameters, computed once per call or solve.

        In inference (``eval()`` and no gradients) the result is cached until a parameter or
        buffer changes in place (an optimiser step, ``load_state_dict``), tracked by version counters.
        """
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable:
            key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in self._state_tensors())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        prep = self._prepare(self.folded(update))
        self._cache = (key, prep) if cacheable else None
        return prep

    def _state_tensors(self) -> list[Tensor]:
        return [*self.parameters(), *self.buffers()]

    def _prepare(self, layers: list[tuple[Tensor, Tensor]]) -> _Prepared:
        D, k = self.features, self.units
        hidden = len(self.activations)
        W0 = layers[0][0]
        delta0 = W0[torch.arange(D * k, device=W0.device), self._designated]
        diag_blocks, off = [], []
        for l in range(1, hidden + 1):
            W = layers[l][0]
            if l < hidden:
                # contiguous once here rather than a copy inside every bmm
                diag_blocks.append(W.view(D, k, D, k).diagonal(dim1=0, dim2=2).permute(2, 0, 1).contiguous())
                if self._split and self._off_rows.numel():
                    off.append(W[self._off_rows][:, self._off_cols] * self._off_mask)
                else:
                    off.append(None)
            else:
                diag_blocks.append(W.view(D, D, k).diagonal(dim1=0, dim2=1).T.unsqueeze(1).contiguous())
        return _Prepared(layers, delta0, diag_blocks, off)

    def _inputs(self, z: Tensor, context: Tensor | None) -> Tensor:
        if z.shape[-1:] != (self.features,):
            raise ValueError(f"expected inputs with {self.features} features, got shape {tuple(z.shape)}")
        w = self.layers[0].weight
        if z.dtype != w.dtype:
            raise ValueError(
                f"inputs are {z.dtype} but the flow's parameters are {w.dtype}; call .to({z.dtype})"
            )
        if self.context_features == 0:
            return z
        if context is None:
            raise ValueError(f"this flow needs a context of {self.context_features} features")
        if context.shape[-1:] != (self.context_features,):
            raise ValueError(
                f"expected a context with {self.context_features} features, got shape {tuple(context.shape)}"
            )
        shape = torch.broadcast_shapes(z.shape[:-1], context.shape[:-1])
        z = z.expand(*shape, self.features)
        context = context.to(z.dtype).expand(*shape, self.context_features)
        return torch.cat([z, context], dim=-1)

    def folded(self, update: bool | None = None) -> list[tuple[Tensor, Tensor]]:
        r"""Normalised weights and biases with the activations' scales folded in.

        With :math:`h_l(a) = o_l \phi(\iota_l a)`, the pre-activations :math:`t_l = \iota_l a_l` obey
        :math:`t_l = \hat W_l \phi(t_{l-1}) + \hat b_l` with :math:`\hat W_l = \iota_l o_{l-1} W_l` and
        :math:`\hat b_l = \iota_l b_l`, so a layer costs one matmul and one :math:`\phi`.
        """
        out = []
        outer: Tensor | float = 1.0
        for l, layer in enumerate(self.layers):
            inner = self.activations[l].scales()[0] if l < len(self.activations) else 1.0
            out.append((layer.normalized_weight(update, inner * outer), layer.bias * inner))
            if l < len(self.activations):
                outer = self.activations[l].scales()[1]
        return out

    def _hidden(self, prep: _Prepared, l: int, h: Tensor) -> Tensor:
        """Hidden layer ``l`` -> ``l + 1`` on batch-last activations ``(D k, N)``."""
        W, b = prep.layers[l]
        if l == len(self.activations) or not self._split:
            return torch.addmm(b[:, None], W, h)
        D, k = self.features, self.units
        N = h.shape[-1]
        out = torch.baddbmm(b.view(D, k, 1), prep.diag_blocks[l - 1], h.view(D, k, N)).view(D * k, N)
        W_off = prep.off[l - 1]
        if W_off is not None:
            out = out.index_add(0, self._off_rows, W_off @ h[self._off_cols])
        return out

    def g(
        self, z: Tensor, context: Tensor | None, prep: _Prepared | None = None, diag: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        r"""The residual :math:`g(z \oplus c)` and, if ``diag``, :math:`\partial g_i / \partial z_i`.

        The diagonal is carried through the layers as one derivative per unit,
        :math:`\delta_r = \partial t_r / \partial z_{v(r)}`, through the diagonal blocks of units that
        share a designated variable (Mouton & Kroon, 2022). Activations are kept batch-last,
        ``(units, N)``, so that the per-variable blocks are one batched matmul on long rows.
        """
        prep = self.prepare() if prep is None else prep
        u = self._inputs(z, context)
        batch = u.shape[:-1]
        u = u.reshape(-1, u.shape[-1])
        N = u.shape[0]
        D, k = self.features, self.units
        W, b = prep.layers[0]
        t = torch.addmm(b[:, None], W, u.T)
        if not diag:
            for l, act in enumerate(self.activations):
                t = self._hidden(prep, l + 1, act.phi(t))
            return t.T.reshape(*batch, D), None
        delta = prep.delta0[:, None].expand(D * k, N)
        for l, act in enumerate(self.activations):
            h, e = act.phi_jvp(t, delta)
            t = self._hidden(prep, l + 1, h)
            delta = torch.bmm(prep.diag_blocks[l], e.view(D, k, N)).view(-1, N)
        return t.T.reshape(*batch, D), delta.T.reshape(*batch, D)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Returns :math:`y = z + g(z \oplus c)` and :math:`\log |\det \partial y / \partial z|`."""
        g, d = self.g(z, context)
        return z + g, torch.log1p(d).sum(-1)

    def forward_only(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`z + g(z)` without the log-determinant."""
        return z + self.g(z, context, diag=False)[0]

    @torch.no_grad()
    def solve(
        self,
        y: Tensor,
        context: Tensor | None = None,
        *,
        atol: float = 1e-6,
        rtol: float | None = None,
        max_iter: int = 50,
        method: Method = "newton",
    ) -> tuple[Tensor, int, float, bool]:
        r"""Solves :math:`y = z + g(z)` for :math:`z`; returns ``(z, iterations, residual, converged)``.

        Stops when :math:`|z + g(z) - y| \le` ``atol + rtol * |y|`` everywhere; ``rtol`` defaults
        to four machine epsilons of the dtype.
        """
        if method not in ("newton", "banach"):
            raise ValueError(f"method must be 'newton' or 'banach', got {method!r}")
        rtol = 4 * torch.finfo(y.dtype).eps if rtol is None else rtol
        prep = self.prepare(update=False)
        if context is not None:
            shape = torch.broadcast_shapes(y.shape[:-1], context.shape[:-1])
            y = y.expand(*shape, self.features)
        tol = atol + rtol * y.abs()
        z = y.clone()
        residual = math.inf
        for it in range(max_iter + 1):
            g, d = self.g(z, context, prep, diag=method == "newton")
            r = z + g - y
            residual = r.abs().max().item() if r.numel() else 0.0
            if not math.isfinite(residual):
                return z, it, residual, False
            if bool((r.abs() <= tol).all()):
                return z, it, residual, True
            if it == max_iter:
                break
            z = z - r / (1 + d) if method == "newton" else y - g
        return z, max_iter, residual, False

    def inverse_with_grad(
        self, z: Tensor, y: Tensor, context: Tensor | None, atol: float, max_iter: int
    ) -> Tensor:
        r"""Attaches implicit gradients to a solution ``z`` of :math:`y = z + g(z)`.

        The value is :math:`y - g(z)`; its backward maps an incoming gradient :math:`v` to
        :math:`w = (I + J)^{-\top} v`, solved by Jacobi sweeps (exact after at most depth + 1 sweeps
        since :math:`J` is triangular), so :math:`\partial z / \partial y = (I + J)^{-1}` and
        :math:`\partial z / \partial \theta = -(I + J)^{-1} \partial g / \partial \theta`.
        """
        z0 = z.detach()
        prep = self.prepare(update=False)
        out = y - self.g(z0, context, prep, diag=False)[0]
        if not out.requires_grad:
            return out
        zr = z0.clone().requires_grad_(True)
        with torch.enable_grad():
            ctx = None if context is None else context.detach()
            gr, dr = self.g(zr, ctx, prep.detach())
        dr = dr.detach()

        def backward(v: Tensor) -> Tensor:
            w = v
            for _ in range(max(max_iter, self.features + 1)):
                (jtw,) = torch.autograd.grad(gr, zr, w, retain_graph=True)
                w_next = (v - jtw + dr * w) / (1 + dr)
                done = bool(((w_next - w).abs() <= atol).all())
                w = w_next
                if done:
                    break
            return w

        out.register_hook(backward)
        return out


class GraphicalResidualFlow(nn.Module):
    r"""A stack of graphical residual blocks sharing one graph: :math:`F = f_T \circ \dots \circ f_1`.

    ``forward`` is the normalizing direction :math:`z \mapsto F(z)` with its log-determinant;
    ``inverse`` solves each block in reverse order. Stacked blocks keep the Jacobian triangular, but
    :math:`F_i` depends on all ancestors of :math:`i`, not only its parents.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i`` (a DAG).
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        blocks: The number of blocks :math:`T`.
        hidden_per_set: Hidden units per variable set and hidden layer.
        hidden_layers: Hidden layers per block.
        kappa: The spectral bound of every layer.
        activation: ``lipswish``, ``elu`` or ``tanh``.
        singletons: Also give each variable hidden units that see only itself.

    Example:
        >>> A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
        >>> flow = GraphicalResidualFlow(A, blocks=2)
        >>> z = torch.randn(5, 3)
        >>> y, ladj = flow(z)
        >>> torch.allclose(flow.inverse(y), z, atol=1e-4)
        True
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        blocks: int = 3,
        hidden_per_set: int = 4,
        hidden_layers: int = 2,
        kappa: float = 0.97,
        activation: str = "lipswish",
        singletons: bool = False,
        n_power_iterations: int = 1,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.blocks = nn.ModuleList(
            GRFBlock(
                adjacency,
                context_adjacency,
                hidden_per_set=hidden_per_set,
                hidden_layers=hidden_layers,
                kappa=kappa,
                activation=activation,
                singletons=singletons,
                n_power_iterations=n_power_iterations,
            )
            for _ in range(blocks)
        )
        self.features = self.blocks[0].features
        self.context_features = self.blocks[0].context_features

    @property
    def effective_weights(self) -> int:
        """The number of unmasked weights over all blocks."""
        return sum(b.effective_weights for b in self.blocks)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Returns :math:`F(z)` and :math:`\log |\det J_F(z)|`, shape ``z.shape[:-1]``."""
        ladj = 0
        for block in self.blocks:
            z, l = block(z, context)
            ladj = ladj + l
        return z, ladj

    call_and_ladj = forward

    def forward_only(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`F(z)` without the log-determinant."""
        for block in self.blocks:
            z = block.forward_only(z, context)
        return z

    def log_abs_det_jacobian(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log |\det J_F(z)|`."""
        return self.forward(z, context)[1]

    def solve(
        self,
        y: Tensor,
        context: Tensor | None = None,
        *,
        atol: float = 1e-6,
        rtol: float | None = None,
        max_iter: int = 50,
        method: Method = "newton",
    ) -> InverseResult:
        """Inverts without gradients and reports iterations and residuals (never raises)."""
        iterations = []
        residual = 0.0
        converged = True
        z = y
        for block in reversed(self.blocks):
            z, it, res, ok = block.solve(z, context, atol=atol, rtol=rtol, max_iter=max_iter, method=method)
            iterations.append(it)
            residual = max(residual, res)
            converged &= ok
        return InverseResult(z, tuple(iterations), residual, converged)

    def inverse(
        self,
        y: Tensor,
        context: Tensor | None = None,
        *,
        atol: float = 1e-6,
        rtol: float | None = None,
        max_iter: int = 50,
        on_fail: OnFail = "raise",
        method: Method = "newton",
    ) -> Tensor:
        r"""Solves :math:`F(z) = y`, block by block in reverse order.

        Differentiable: gradients w.r.t. ``y``, ``context`` and the parameters follow the implicit
        function theorem.

        Arguments:
            y: Points to invert, shape ``(*, D)``.
            context: The context, shape ``(*, C)``, broadcast against ``y``.
            atol, rtol: Stop when :math:`|z + g(z) - y| \le \mathrm{atol} + \mathrm{rtol} |y|`.
            max_iter: The most iterations per block.
            on_fail: ``raise`` a :class:`ConvergenceError` or ``warn`` when a block did not converge.
            method: ``newton`` (diagonal Newton, MintNet) or ``banach`` (:math:`z \leftarrow y - g(z)`).
        """
        _check_on_fail(on_fail)
        grad = torch.is_grad_enabled()
        z = y
        for i, block in reversed(list(enumerate(self.blocks))):
            y_i = z
            sol, it, res, ok = block.solve(
                y_i.detach(),
                None if context is None else context.detach(),
                atol=atol,
                rtol=rtol,
                max_iter=max_iter,
                method=method,
            )
            if not ok:
                msg = (
                    f"the inverse of block {i} did not converge: residual {res:.3g} after {it} "
                    f"iterations (atol={atol}, max_iter={max_iter}); raise max_iter or atol"
                )
                if on_fail == "raise":
                    raise ConvergenceError(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            z = block.inverse_with_grad(sol, y_i, context, atol, max_iter) if grad else sol
        return z

    def certify(self) -> Tensor:
        """The exact Lipschitz bound in :math:`z` of every block's residual :math:`g`: the product of
        the exact spectral norms of its normalised weights, the first restricted to the columns of
        :math:`z` (the activations are 1-Lipschitz; the context is not bounded).
        """
        bounds = []
        for block in self.blocks:
            bound = torch.ones((), dtype=torch.float64)
            with torch.no_grad():
                for layer in block.layers:
                    bound = bound * layer.spectral_norm().cpu()
            bounds.append(bound)
        return torch.stack(bounds)


class FlowDistribution(Distribution):
    r"""The distribution of a graphical residual flow with a standard normal base.

    ``direction="normalize"``: :math:`\epsilon = F(x)`, so :math:`\log p(x) = \log \mathcal{N}(F(x))
    + \log|\det J_F(x)|` takes one forward pass and sampling inverts :math:`F`.
    ``direction="generate"``: :math:`x = F(\epsilon)`, so sampling with its log-density takes one
    forward pass and ``log_prob`` of a given point inverts :math:`F`.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        transform: GraphicalResidualFlow,
        context: Tensor | None = None,
        *,
        direction: Direction = "normalize",
        inverse_options: dict | None = None,
    ) -> None:
        if direction not in ("normalize", "generate"):
            raise ValueError(f"direction must be 'normalize' or 'generate', got {direction!r}")
        self.transform = transform
        self.context = context
        self.direction = direction
        self.inverse_options = dict(inverse_options or {})
        batch = Size() if context is None else context.shape[:-1]
        ref = transform.blocks[0].layers[0].weight
        self._dtype, self._device = ref.dtype, ref.device
        super().__init__(batch, Size((transform.features,)), validate_args=False)

    def _base_log_prob(self, e: Tensor) -> Tensor:
        D = e.shape[-1]
        return -0.5 * (e * e).sum(-1) - 0.5 * D * math.log(2 * math.pi)

    def _base_rsample(self, sample_shape: Size) -> Tensor:
        shape = self._extended_shape(Size(sample_shape))
        return torch.randn(shape, dtype=self._dtype, device=self._device)

    def log_prob(self, value: Tensor) -> Tensor:
        if self.direction == "normalize":
            e, ladj = self.transform(value, self.context)
            return self._base_log_prob(e) + ladj
        e = self.transform.inverse(value, self.context, **self.inverse_options)
        _, ladj = self.transform(e, self.context)
        return self._base_log_prob(e) - ladj

    def rsample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        e = self._base_rsample(Size(sample_shape))
        if self.direction == "generate":
            return self.transform(e, self.context)[0]
        return self.transform.inverse(e, self.context, **self.inverse_options)

    def sample(self, sample_shape: Size | Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def rsample_and_log_prob(self, sample_shape: Size | Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """A reparameterised sample and its log-density (one forward pass when generating)."""
        e = self._base_rsample(Size(sample_shape))
        if self.direction == "generate":
            x, ladj = self.transform(e, self.context)
            return x, self._base_log_prob(e) - ladj
        x = self.transform.inverse(e, self.context, **self.inverse_options)
        e2, ladj = self.transform(x, self.context)
        return x, self._base_log_prob(e2) + ladj


class GRF(nn.Module):
    r"""A (conditional) graphical residual flow as a distribution factory, in the style of zuko.

    ``GRF(A)()`` is an unconditional :class:`FlowDistribution`; with a context adjacency,
    ``GRF(A, Ac)(c)`` is :math:`p(x \mid c)`.

    Arguments:
        adjacency: ``(D, D)`` boolean, ``A[i, j]`` iff ``j`` is a parent of ``i``.
        context_adjacency: ``(D, C)`` boolean, which context inputs each variable sees.
        direction: ``normalize`` (fast ``log_prob``, e.g. a prior) or ``generate`` (fast
            ``rsample_and_log_prob``, e.g. an encoder).
        atol, max_iter, on_fail: Options of :meth:`GraphicalResidualFlow.inverse`.
        kwargs: Keyword arguments of :class:`GraphicalResidualFlow`.

    Example:
        >>> A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
        >>> q = GRF(A, torch.ones(2, 3, dtype=torch.bool), direction="generate")
        >>> z, log_q = q(torch.randn(7, 3)).rsample_and_log_prob()
        >>> z.shape, log_q.shape
        (torch.Size([7, 2]), torch.Size([7]))
    """

    def __init__(
        self,
        adjacency: Tensor,
        context_adjacency: Tensor | None = None,
        *,
        direction: Direction = "normalize",
        atol: float = 1e-6,
        max_iter: int = 50,
        on_fail: OnFail = "raise",
        **kwargs,
    ) -> None:
        super().__init__()
        if direction not in ("normalize", "generate"):
            raise ValueError(f"direction must be 'normalize' or 'generate', got {direction!r}")
        _check_on_fail(on_fail)
        self.transform = GraphicalResidualFlow(adjacency, context_adjacency, **kwargs)
        self.direction = direction
        self.inverse_options = {"atol": atol, "max_iter": max_iter, "on_fail": on_fail}

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        return FlowDistribution(
            self.transform, context, direction=self.direction, inverse_options=self.inverse_options
        )

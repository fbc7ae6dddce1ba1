r"""Spectral normalisation of a masked linear layer, whatever its layout.

Power iteration runs per connected component of the mask,
:math:`\sigma = \max_c \lVert W_c v_c \rVert`, and
:math:`(W \odot M)_s = (W \odot M) / \max(1, \sigma / \kappa)` on the bounded inputs.

References:
    | Invertible Residual Networks (Behrmann et al., 2019)
    | https://arxiv.org/abs/1811.00995
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SpectralLinear"]


class SpectralLinear(nn.Module):
    r"""What a masked linear layer with a spectral bound does whatever its layout.

    A subclass gives the layout: ``masked()`` (:math:`W \odot M`), ``_bounded_weight(W)`` (its
    bounded part), ``_matvec`` / ``_rmatvec`` (products of that part with the power vectors),
    ``_scaled(W, scale, factor)`` (the scale on the bounded inputs, ``factor`` on the others) and
    ``sync_power_vectors()``; and the buffers ``u``, ``v``, ``_row_component``, ``_col_component``
    with ``_components``, ``kappa`` and ``n_power_iterations``.
    """

    def _normalize(self, x: Tensor, component: Tensor) -> Tensor:
        sq = torch.zeros(self._components, dtype=x.dtype, device=x.device).index_add(0, component, x * x)
        return x / sq.sqrt().clamp(min=1e-12)[component]

    def _component_norms(self, y: Tensor) -> Tensor:
        sq = torch.zeros(self._components, dtype=y.dtype, device=y.device)
        return sq.index_add(0, self._row_component, y * y).sqrt()

    def sigma(self, W: Tensor, update: bool = False) -> Tensor:
        r"""The estimate :math:`\max_c \lVert W_c v_c \rVert` of the spectral norm of the (masked) ``W``.

        With :math:`v` held fixed its gradient is :math:`u v^\top`, :math:`u = W v / \lVert W v \rVert`,
        as for :math:`u^\top W v`, and it is never smaller. With ``update``, one power iteration
        runs first and shares this matrix-vector product.
        """
        return self._sigma(self._bounded_weight(W), update)

    def _sigma(self, Wb: Tensor, update: bool) -> Tensor:
        if update:
            with torch.no_grad():
                v = self._normalize(self._rmatvec(Wb, self.u), self._col_component)
                self.v.copy_(v)
        else:
            # a clone: the buffer changes in place at the next training step, autograd must not see it
            v = self.v.clone() if torch.is_grad_enabled() else self.v
        Wv = self._matvec(Wb, v)
        norms = self._component_norms(Wv)
        if update:
            with torch.no_grad():
                self.u.copy_(Wv / norms.clamp(min=1e-12)[self._row_component])
        return norms.max()

    @torch.no_grad()
    def power_iterate(self, n: int) -> None:
        r"""Runs ``n`` power iterations on :math:`W \odot M`, updating the persistent vectors.

        The iteration runs separately on every connected component of the mask (the vectors are
        normalised per component). Graphical masks are close to block-diagonal; a single global
        iteration lets the components of blocks that are not dominant decay to round-off, and
        recovers them only hundreds of iterations after training makes one of them dominant.
        """
        if self.kappa is None:
            return
        Wb = self._bounded_weight(self.masked())
        for _ in range(n):
            self._sigma(Wb, update=True)

    def train(self, mode: bool = True):
        if self.training and not mode:
            self.sync_power_vectors()
        return super().train(mode)

    def normalized_weight(self, update: bool | None = None, factor: Tensor | float = 1.0) -> Tensor:
        r""":math:`(W \odot M)_s`, the masked and spectrally normalised weight, times ``factor``.

        Arguments:
            update: Run a power iteration first; by default in training mode only.
            factor: A scalar folded into the same multiplication (e.g. an activation's scale).
        """
        W = self.masked()
        if self.kappa is None:
            return W * factor if not isinstance(factor, float) or factor != 1.0 else W
        update = self.training if update is None else update
        if update and self.n_power_iterations > 1:
            self.power_iterate(self.n_power_iterations - 1)
        scale = factor / torch.clamp(self.sigma(W, update=update) / self.kappa, min=1.0)
        return self._scaled(W, scale, factor)

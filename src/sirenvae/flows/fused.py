r"""A graphical residual block's :math:`g` and Jacobian diagonal as one autograd node.

With :math:`t_1 = W_0 u + b_0`, :math:`\delta_1 = \mathrm{diag}_v W_0`, and for each hidden layer
:math:`l`, :math:`h_l = \phi(t_l)`, :math:`e_l = \phi'(t_l) \delta_l`,
:math:`t_{l+1} = W_l h_l + b_l`, :math:`\delta_{l+1} = B_l e_l` (:math:`B_l` the diagonal blocks of
:math:`W_l`), the block returns :math:`g = t_{L+1}` and :math:`d = \delta_{L+1}`. Autograd records
some twenty small kernels per layer for this; the backward here is written out once, reusing the
saved activations:

.. math:: \bar t_l = \phi'(t_l) \bar h_l + \phi''(t_l) \delta_l \bar e_l, \qquad
    \bar\delta_l = \phi'(t_l) \bar e_l,

with :math:`\bar h_l = W_l^\top \bar t_{l+1}`, :math:`\bar e_l = B_l^\top \bar\delta_{l+1}`,
:math:`\bar W_l = \bar t_{l+1} h_l^\top` and :math:`\bar B_l = \bar\delta_{l+1} e_l^\top` per block.
Each layer after the first gives its products with :math:`W_l^\top` and the weights' gradients
(:meth:`~sirenvae.layers.MaskedLinear.batch_last_vjp`; the dense layout has it); the first layer is
dense. It is differentiable once: asking for a second derivative (``create_graph=True``) raises,
and ``GRFBlock.fused = False`` gives the autograd path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sirenvae.layers import MaskedLinear
from sirenvae.nn import _Activation

__all__ = ["FusedResidual", "fusable"]


def fusable(block) -> bool:
    """Whether the block's residual has a hand-written backward: ``block.fused`` set, a dense first
    layer (it is multiplied whole), later layers with
    :meth:`~sirenvae.layers.MaskedLinear.batch_last_vjp` and activations with
    :meth:`~sirenvae.nn._Activation.derivatives`.
    """
    if not block.fused or block.layers[0].layout != "dense":
        return False
    if any(type(layer).batch_last_vjp is MaskedLinear.batch_last_vjp for layer in block.layers[1:]):
        return False
    return all(type(act).derivatives is not _Activation.derivatives for act in block.activations)


class FusedResidual(torch.autograd.Function):
    r"""``apply(transform, u, W0, b0, delta0, *per_layer)``: :math:`g` and :math:`d`, both ``(N, D)``.

    ``u`` is ``(N, D + C)`` (the inputs and the context), ``per_layer`` holds ``(W, b, B, off)`` for
    each layer after the first: the weight, bias, diagonal blocks and off-diagonal part of the
    transform (:class:`~sirenvae.flows.residual.GraphicalResidualTransform`), which computes the
    hidden layers as its autograd path does.
    """

    @staticmethod
    def forward(ctx, transform, u: Tensor, W0: Tensor, b0: Tensor, delta0: Tensor, *per_layer):
        block = transform.block
        D, k = block.features, block.units
        N = u.shape[0]
        t = torch.addmm(b0[:, None], W0, u.T)
        delta = delta0[:, None]
        saved = []
        for l, act in enumerate(block.activations):
            h, d1, d2 = act.derivatives(t)
            e = d1 * delta
            saved.append((h, e, d1, d2, delta))
            t = transform._hidden(l + 1, h)
            delta = torch.bmm(per_layer[4 * l + 2], e.view(D, k, N)).view(-1, N)
        ctx.transform, ctx.saved = transform, saved
        ctx.save_for_backward(u, W0)
        ctx.set_materialize_grads(False)
        return t.T.contiguous(), delta.T.contiguous()

    @staticmethod
    def backward(ctx, gg: Tensor | None, gd: Tensor | None):
        if torch.is_grad_enabled():  # create_graph: a second derivative is asked for
            raise RuntimeError(
                "the fused graphical residual block has no second derivative; "
                "set block.fused = False on its GRFBlocks for the autograd path"
            )
        transform, saved = ctx.transform, ctx.saved
        block = transform.block
        D = block.features
        L = len(block.activations)
        u, W0 = ctx.saved_tensors
        N = u.shape[0]
        needs = ctx.needs_input_grad
        grads: list[Tensor | None] = [None] * len(needs)
        # batch-last gradients of t_{L+1} and delta_{L+1}
        gt = torch.zeros(D, N, dtype=u.dtype, device=u.device) if gg is None else gg.T.contiguous()
        gdelta = None if gd is None else gd.T.contiguous()
        for l in range(L, 0, -1):
            gt, gdelta = _layer_backward(transform, l, gt, gdelta, saved[l - 1], needs, grads)
        if needs[2]:
            grads[2] = gt @ u
        if needs[3]:
            grads[3] = gt.sum(1)
        if needs[4] and gdelta is not None:
            grads[4] = gdelta.sum(1)
        if needs[1]:
            grads[1] = gt.T @ W0
        return tuple(grads)


def _layer_backward(transform, l: int, gt: Tensor, gdelta: Tensor | None, saved: tuple, needs, grads: list):
    r"""From the gradients of :math:`t_{l+1}` and :math:`\delta_{l+1}` (batch-last) to those of
    :math:`t_l` and :math:`\delta_l`, filling in the gradients of layer ``l``'s weights (inputs
    ``5 + 4 (l - 1)`` onwards: ``W``, ``b``, the diagonal blocks, the off-diagonal part).
    """
    block = transform.block
    h, e, d1, d2, delta = saved
    D, k, N = block.features, block.units, h.shape[1]
    prepared = transform.prepared[l]
    out_k = prepared.diagonal.shape[1]
    B = prepared.diagonal
    i = 5 + 4 * (l - 1)
    if needs[i + 1]:
        grads[i + 1] = gt.sum(1)
    gh, g = block.layers[l].batch_last_vjp(prepared, gt, h, weight_grad=needs[i], off_grad=needs[i + 3])
    if g.weight is not None:
        grads[i] = g.weight
    if g.off is not None:
        grads[i + 3] = g.off
    gB = g.diagonal
    if gdelta is None:
        gt = gh * d1
    else:
        gdelta3 = gdelta.view(D, out_k, N)
        gBd = torch.bmm(gdelta3, e.view(D, k, N).transpose(1, 2))
        gB = gBd if gB is None else gB + gBd
        ge = torch.bmm(B.transpose(1, 2), gdelta3).view(D * k, N)
        gt = torch.addcmul(gh * d1, ge * delta, d2)
        gdelta = ge * d1
    if needs[i + 2]:
        grads[i + 2] = gB
    return gt, gdelta

"""The fused dense block (sirenvae.flows.fused) against autograd on the same block."""

import pytest
import torch

from sirenvae.flows import GraphicalResidualFlow
from sirenvae.flows.fused import FusedResidual, fusable
from sirenvae.flows.residual import GRFBlock
from sirenvae.layers import Prepared


def random_block(D, C, activation, hidden_layers, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    A = torch.tril(torch.rand(D, D, generator=g) < 0.4, -1)
    Ac = torch.rand(D, C, generator=g) < 0.5 if C else None
    torch.manual_seed(seed)
    block = GRFBlock(A, Ac, activation=activation, hidden_layers=hidden_layers, layout="dense")
    return block.double().to(device).eval()


def value_and_grads(block, z, c, fused):
    """``y``, ``ladj`` and the gradients of a fixed random functional of both."""
    block.fused = fused
    y, ladj = block(c).call_and_ladj(z)
    g = torch.Generator().manual_seed(1)
    wy = torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device)
    wl = torch.linspace(0.5, 2, ladj.numel(), dtype=y.dtype, device=y.device).view(ladj.shape)
    loss = (y * wy).sum() + (ladj * wl).sum()
    wrt = [*block.parameters(), z] + ([c] if c is not None else [])
    return y, ladj, torch.autograd.grad(loss, wrt)


def uses_fused(out):
    """Whether the autograd graph of ``out`` holds a fused block."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "FusedResidualBackward":
            return True
        stack.extend(f for f, _ in fn.next_functions)
    return False


CONFIGS = [
    pytest.param(D, C, act, hl, id=f"D{D}-C{C}-{act}-h{hl}")
    for D, C in ((5, 0), (9, 3))
    for act in ("lipswish", "elu", "tanh")
    for hl in (1, 2, 3)
]


@pytest.mark.parametrize("D, C, activation, hidden_layers", CONFIGS)
def test_fused_block_agrees_with_autograd(D, C, activation, hidden_layers, device):
    """Values and every gradient (parameters, inputs, context) as autograd computes them."""
    block = random_block(D, C, activation, hidden_layers, seed=D + hidden_layers, device=device)
    assert fusable(block)
    z = torch.randn(4, 3, D, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(3, C, dtype=torch.float64, device=device, requires_grad=True) if C else None
    y1, l1, g1 = value_and_grads(block, z, c, fused=True)
    y0, l0, g0 = value_and_grads(block, z, c, fused=False)
    assert uses_fused(y1) and not uses_fused(y0)
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-14)
    torch.testing.assert_close(l1, l0, rtol=0, atol=1e-12)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("C", [0, 3])
def test_fused_block_gradcheck(C, device):
    """gradcheck of g and its Jacobian diagonal in the inputs, context and prepared weights."""
    block = random_block(6, C, "lipswish", 2, seed=3, device=device)
    t = block(torch.randn(2, C, dtype=torch.float64, device=device) if C else None)
    u = torch.randn(2, 6 + C, dtype=torch.float64, device=device, requires_grad=True)
    per_layer = [p.detach().clone().requires_grad_(True) if p is not None else None for p in t._per_layer()]
    first = t.prepared[0]
    W0, b0, delta0 = (p.detach().clone().requires_grad_(True) for p in (first.weight, first.bias, t.delta0))

    def fn(u, W0, b0, delta0, *rest):
        it = iter(rest)
        layers = [next(it) if p is not None else None for p in per_layer]
        # the transform's hidden layers read these very tensors
        t.prepared = [first._replace(weight=W0, bias=b0)] + [
            Prepared(*layers[4 * i : 4 * i + 4]) for i in range(len(layers) // 4)
        ]
        return FusedResidual.apply(t, u, W0, b0, delta0, *layers)

    args = (u, W0, b0, delta0, *(p for p in per_layer if p is not None))
    assert torch.autograd.gradcheck(fn, args)


def test_fused_is_used_only_where_it_can_be(device):
    """Sparse blocks and second derivatives take the autograd path (``fused = False``)."""
    A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    flow = GraphicalResidualFlow(A, blocks=1, layout="block-sparse").double().to(device)
    assert not fusable(flow.blocks[0])
    block = random_block(4, 0, "lipswish", 2, seed=0, device=device)
    z = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="no second derivative.*fused = False"):
        torch.autograd.grad(block().call_and_ladj(z)[1].sum(), z, create_graph=True)
    block.fused = False
    (gz,) = torch.autograd.grad(block().call_and_ladj(z)[1].sum(), z, create_graph=True)
    (hz,) = torch.autograd.grad(gz.sum(), z)
    assert torch.isfinite(hz).all()


def test_a_flow_of_blocks_takes_second_derivatives_only_apart():
    """A flow of fused blocks is differentiable once (it says how to get more); with
    ``fused = False`` its blocks also prepare their weights apart, and second derivatives in the
    weights are there."""
    torch.manual_seed(0)
    A = torch.tril(torch.rand(5, 5) < 0.5, -1)
    flow = GraphicalResidualFlow(A, blocks=2, layout="dense").double().train()
    z = torch.randn(7, 5, dtype=torch.float64)
    weight = flow.blocks[0].layers[1].weight

    def first(create_graph):
        ladj = flow().call_and_ladj(z)[1].sum()
        return torch.autograd.grad(ladj, weight, create_graph=create_graph)[0]

    with pytest.raises(RuntimeError, match="no second derivative.*fused = False"):
        torch.autograd.grad(first(True).sum(), weight)
    for block in flow.blocks:
        block.fused = False
    (g2,) = torch.autograd.grad(first(True).square().sum(), weight)
    assert torch.isfinite(g2).all() and g2.abs().sum() > 0

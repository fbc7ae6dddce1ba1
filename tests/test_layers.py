"""The masked layer type (sirenvae.layers): one type for both layouts, several units per variable."""

import pytest
import torch

from sirenvae.layers import (
    SPARSE_MIN_UNITS,
    BlockSparseLinear,
    DenseLinear,
    MaskedLinear,
    MaskedMLP,
    Prepared,
    choose_layout,
)
from sirenvae.masks import edge_blocks, graphical_blocks

LAYOUTS = ("dense", "block-sparse")


def random_sets(D, p, seed):
    """A random DAG's sets ``{i} ∪ pa(i)`` as a ``(D, D)`` boolean matrix."""
    g = torch.Generator().manual_seed(seed)
    A = torch.tril(torch.rand(D, D, generator=g) < p, -1)
    perm = torch.randperm(D, generator=g)
    return (A | torch.eye(D, dtype=torch.bool))[perm][:, perm]


def input_units(D, seed):
    """One unit per variable but three for one of them (a categorical parent's one-hot block)."""
    counts = torch.ones(D, dtype=torch.long)
    counts[seed % D] = 3
    return counts


def owners(counts):
    """The variable of every unit, for ``counts`` units per variable."""
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


def allowed_units(S, in_counts, out_counts):
    """``(out units, in units)``: whether an output unit's node may see an input unit's variable."""
    return S[owners(out_counts)][:, owners(in_counts)]


def jacobian(module, x):
    return torch.autograd.functional.jacobian(module, x)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(4))
def test_a_layer_with_several_units_per_variable_keeps_the_graph(layout, seed):
    """3 input units for one variable, 2 output units per node: output units of node i depend on the
    input units of the variables in i's set only (autograd Jacobians), and on all of them."""
    D = 6 + seed
    S = random_sets(D, 0.4, seed)
    ins, outs = input_units(D, seed), torch.full((D,), 2)
    torch.manual_seed(seed)
    layer = MaskedLinear(edge_blocks(S).with_units(inputs=ins, outputs=2), layout=layout, kappa=None).double()
    assert layer.layout == layout and layer.shape == (2 * D, D + 2)
    x = torch.randn(int(ins.sum()), dtype=torch.float64)
    J = jacobian(layer, x)
    allowed = allowed_units(S, ins, outs)
    assert (J[~allowed] == 0).all() and (J[allowed] != 0).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
def test_an_mlp_with_several_units_per_variable_keeps_the_graph(layout, hidden_layers):
    D = 9
    S = random_sets(D, 0.35, hidden_layers)
    ins, outs = input_units(D, hidden_layers), torch.full((D,), 2)
    torch.manual_seed(hidden_layers)
    mlp = MaskedMLP(S, 2, hidden_layers, layout=layout, in_units=ins, out_units=2).double()
    assert mlp.layout == layout
    x = torch.randn(int(ins.sum()), dtype=torch.float64)
    J = jacobian(mlp, x)
    allowed = allowed_units(S, ins, outs)
    assert J.shape == (2 * D, D + 2)
    assert (J[~allowed] == 0).all() and (J[allowed] != 0).float().mean() > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_dense_and_block_sparse_agree_from_the_same_state_dict(seed):
    """Either layout's checkpoint loads into the other, and both give the same outputs and gradients."""
    D = 7 + seed
    S = random_sets(D, 0.4, seed)
    ins = input_units(D, seed)
    torch.manual_seed(seed)
    dense = MaskedMLP(S, 3, 2, layout="dense", in_units=ins, out_units=2).double()
    sparse = MaskedMLP(S, 3, 2, layout="block-sparse", in_units=ins, out_units=2).double()
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(5, int(ins.sum()), dtype=torch.float64, requires_grad=True)
    yd, ys = dense(x), sparse(x)
    torch.testing.assert_close(ys, yd, rtol=0, atol=1e-12)
    (gd,) = torch.autograd.grad(yd.square().sum(), x)
    (gs,) = torch.autograd.grad(ys.square().sum(), x)
    torch.testing.assert_close(gs, gd, rtol=0, atol=1e-12)
    # and back: the block-sparse checkpoint gives the dense layers their weights exactly
    again = MaskedMLP(S, 3, 2, layout="dense", in_units=ins, out_units=2).double()
    again.load_state_dict(sparse.state_dict())
    for name, value in dense.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    # a checkpoint of another graph is refused
    other = MaskedMLP(random_sets(D, 0.4, seed + 10), 3, 2, layout="block-sparse", in_units=ins, out_units=2)
    with pytest.raises(ValueError, match="does not match this layer's graph"):
        other.double().load_state_dict(dense.state_dict())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_spectrally_bounded_layer_with_a_multi_unit_context(layout):
    """A graphical flow's first layer whose context inputs have several units: the flow's own
    variables keep one unit each (the diagonal blocks stay first), the bound holds on them only."""
    g = torch.Generator().manual_seed(0)
    D, C = 8, 2
    A = torch.tril(torch.rand(D, D, generator=g) < 0.4, -1)
    Ac = torch.rand(D, C, generator=g) < 0.6
    first = graphical_blocks(A, Ac, hidden_per_set=2).layers[0].with_units(inputs=[1] * D + [3, 1])
    assert first.diagonal and first.in_blocks == D + 4
    torch.manual_seed(1)
    layer = MaskedLinear(first, layout=layout, bounded_groups=D).double()
    with torch.no_grad():
        layer.weight.mul_(5)
    layer.eval()
    assert layer.bounded_columns == D
    assert layer.spectral_norm() <= layer.kappa + 1e-9
    p = layer.prepare()
    assert isinstance(p, Prepared) and p.diagonal.shape == (D, 2, 1)
    dense_W = layer.to_dense(p.weight)
    torch.testing.assert_close(
        p.diagonal[:, :, 0], dense_W.view(D, 2, -1)[torch.arange(D), :, torch.arange(D)]
    )


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_prepare_gives_the_same_parts_in_both_layouts(hidden_layers):
    """The folded weight, diagonal blocks and off-diagonal part describe the same matrix."""
    g = torch.Generator().manual_seed(hidden_layers)
    D = 12
    A = torch.tril(torch.rand(D, D, generator=g) < 0.2, -1)
    masks = graphical_blocks(A, hidden_per_set=2, hidden_layers=hidden_layers)
    for l, structure in enumerate(masks.layers):
        torch.manual_seed(l)
        dense = MaskedLinear(structure, layout="dense", by_blocks=l > 0).double().eval()
        sparse = MaskedLinear(structure, layout="block-sparse").double()
        sparse.load_state_dict(dense.state_dict())
        sparse.eval()
        pd, ps = dense.prepare(factor=0.5, bias_factor=2.0), sparse.prepare(factor=0.5, bias_factor=2.0)
        torch.testing.assert_close(sparse.to_dense(ps.weight), pd.weight, rtol=0, atol=1e-12)
        torch.testing.assert_close(ps.diagonal, pd.diagonal, rtol=0, atol=1e-12)
        torch.testing.assert_close(ps.bias, pd.bias)
        x = torch.randn(structure.shape[1], 4, dtype=torch.float64)
        torch.testing.assert_close(sparse.batch_last(x, ps), dense.batch_last(x, pd), rtol=0, atol=1e-12)
        gx, grads = dense.batch_last_vjp(pd, torch.ones(structure.shape[0], 4, dtype=torch.float64), x)
        assert gx.shape == x.shape and isinstance(grads, Prepared)
        detached = pd.detach()
        assert all(t is None or not t.requires_grad for t in detached)


def test_a_dense_layer_computes_by_blocks_only_without_autograd():
    """A hidden layer planned by blocks gathers its off-diagonal part only where no gradient is
    asked for (sampling, the inverse); with autograd it is one dense matmul. Both give the same
    output, and the vector-Jacobian product of the block path matches autograd's of the dense one."""
    g = torch.Generator().manual_seed(0)
    D = 16
    A = torch.tril(torch.rand(D, D, generator=g) < 0.1, -1)
    structure = graphical_blocks(A, hidden_per_set=2, hidden_layers=2).layers[1]
    torch.manual_seed(0)
    layer = MaskedLinear(structure, layout="dense", by_blocks=True).double().eval()
    assert layer._split
    x = torch.randn(structure.shape[1], 5, dtype=torch.float64)
    with torch.no_grad():
        by_blocks = layer.prepare(factor=0.5, bias_factor=2.0)
    dense = layer.prepare(factor=0.5, bias_factor=2.0)
    assert by_blocks.off is not None and by_blocks.off.numel() > 0 and dense.off is None
    torch.testing.assert_close(
        layer.batch_last(x, by_blocks), layer.batch_last(x, dense).detach(), rtol=0, atol=1e-12
    )
    grad = torch.randn(structure.shape[0], 5, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    (layer.batch_last(xr, dense) * grad).sum().backward()
    gx, _ = layer.batch_last_vjp(by_blocks, grad, x)
    torch.testing.assert_close(gx, xr.grad, rtol=0, atol=1e-12)


def test_the_type_dispatches_and_copies():
    import copy

    S = random_sets(5, 0.5, 0)
    assert type(MaskedLinear(S)) is DenseLinear
    layer = MaskedLinear(S, layout="block-sparse", kappa=None)
    assert type(layer) is BlockSparseLinear and isinstance(layer, MaskedLinear)
    assert type(copy.deepcopy(layer)) is BlockSparseLinear
    with pytest.raises(ValueError, match="unknown layout 'sparse'"):
        MaskedLinear(S, layout="sparse")
    with pytest.raises(ValueError, match="one count >= 1 per group"):
        edge_blocks(S).with_units(inputs=[1, 2])
    with pytest.raises(ValueError, match="one input unit per block"):
        graphical_blocks(S & ~torch.eye(5, dtype=torch.bool)).layers[1].with_units(inputs=2)


def test_one_rule_picks_the_layout():
    assert choose_layout("dense", connections=1, cells=10**6, units=10**6) == "dense"
    assert choose_layout("block-sparse", connections=10, cells=10, units=1) == "block-sparse"
    assert choose_layout("auto", connections=10, cells=100, units=SPARSE_MIN_UNITS) == "block-sparse"
    assert choose_layout("auto", connections=11, cells=100, units=SPARSE_MIN_UNITS) == "dense"
    assert choose_layout("auto", connections=10, cells=100, units=SPARSE_MIN_UNITS - 1) == "dense"

    def never():
        raise AssertionError("units counted although the density rules block-sparse out")

    assert choose_layout("auto", connections=50, cells=100, units=never) == "dense"
    with pytest.raises(ValueError, match="unknown layout"):
        choose_layout("sparse", connections=1, cells=1, units=1)

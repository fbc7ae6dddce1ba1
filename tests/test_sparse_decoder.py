"""The block-sparse decoder: the dense decoder's function, memory by the graph's edges."""

import pytest
import torch

from sirenvae.data import default_latent_rule, latent_split
from sirenvae.layers import BlockSparseLinear, MaskedMLP
from sirenvae.masks import set_blocks, set_groups
from sirenvae.models import Decoder
from sirenvae.models.config import DECODER_MEANS
from sirenvae.networks import load_network
from test_sparse import sparse_dag

LIKELIHOODS = ("normal", "studentt")  # the location-scale families (discrete ones: test_mixed.py)


def random_sets(seed):
    """Random parent sets with repeated rows, empty rows and unused inputs."""
    g = torch.Generator().manual_seed(seed)
    O, I = torch.randint(1, 14, (2,), generator=g).tolist()
    S = torch.rand(O, I, generator=g) < torch.rand(1, generator=g)
    S[:, torch.rand(I, generator=g) < 0.2] = False
    return torch.cat([S, S[: seed % 3], torch.zeros(seed % 2, I, dtype=torch.bool)])


@pytest.mark.parametrize("seed", range(15))
def test_set_blocks_are_the_dense_mlp_masks(seed):
    S = random_sets(seed)
    distinct, index = torch.unique(S, dim=0, return_inverse=True)
    group, (a, j), G = set_groups(S)  # the same groups, from the nonzeros
    assert G == distinct.shape[0] and torch.equal(group, index)
    members = torch.zeros(G, S.shape[1], dtype=torch.bool)
    members[a, j] = True
    assert torch.equal(members, distinct)
    for hidden_layers in (1, 2, 3):
        dense = MaskedMLP(S, 1 + seed % 3, hidden_layers)
        blocks = set_blocks(S, 1 + seed % 3, hidden_layers)
        assert len(blocks) == len(dense.layers)
        for layer, block in zip(dense.layers, blocks, strict=True):
            assert torch.equal(block.dense(), layer.mask)
            pairs = block.rows * block.in_blocks + block.cols
            assert pairs.unique().numel() == pairs.numel()  # no block stored twice


@pytest.mark.parametrize("seed", range(6))
def test_block_sparse_mlp_loads_a_dense_checkpoint_and_agrees(seed):
    torch.manual_seed(seed)
    S = random_sets(seed)
    dense = MaskedMLP(S, 3, 1 + seed % 3).double()
    sparse = MaskedMLP(S, 3, 1 + seed % 3, layout="block-sparse").double()
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(2, 5, S.shape[1], dtype=torch.float64, requires_grad=True)
    yd, ys = dense(x), sparse(x)
    assert ys.shape == yd.shape
    torch.testing.assert_close(ys, yd, rtol=0, atol=1e-12)
    w = torch.randn_like(yd)
    gd = torch.autograd.grad((yd * w).sum(), [x, *(layer.bias for layer in dense.layers)])
    gs = torch.autograd.grad((ys * w).sum(), [x, *(layer.bias for layer in sparse.layers)])
    for a, b in zip(gd, gs, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("mean", DECODER_MEANS)
def test_sparse_decoder_is_the_dense_decoder(mean, likelihood):
    torch.manual_seed(0)
    A = sparse_dag(60, parents=2, seed=1)
    sets = A[::2]  # every other node observed
    kw = {"mean": mean, "likelihood": likelihood}
    dense = Decoder(sets, 3, 2, 1e-3, layout="dense", **kw).double()
    sparse = Decoder(sets, 3, 2, 1e-3, layout="block-sparse", **kw).double()
    assert dense.layout == "dense" and sparse.layout == "block-sparse"
    sparse.load_state_dict(dense.state_dict())
    # and back: a block-sparse checkpoint loads into dense layers (a run keeps loading should the
    # automatic choice of layout change)
    again = Decoder(sets, 3, 2, 1e-3, layout="dense", **kw).double()
    again.load_state_dict(sparse.state_dict())
    for name, value in dense.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    nodes = torch.randn(7, 60, dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, sets.shape[0], dtype=torch.float64)
    ld, ls = dense(nodes).log_prob(x), sparse(nodes).log_prob(x)
    torch.testing.assert_close(ls, ld, rtol=0, atol=1e-10)
    (gd,) = torch.autograd.grad(ld.sum(), nodes)
    (gs,) = torch.autograd.grad(ls.sum(), nodes)
    torch.testing.assert_close(gs, gd, rtol=0, atol=1e-10)


def test_sparse_decoder_at_two_thousand_nodes_reads_only_the_parents():
    torch.manual_seed(0)
    D = 2000
    A = sparse_dag(D, parents=2, seed=2)
    observed = torch.arange(D) % 5 != 0
    sets = A[observed]
    decoder = Decoder(sets, 4, 2, 1e-3, mean="linear+mlp").double()
    assert decoder.layout == "block-sparse"  # chosen by itself at this size
    # stored weights grow with the members of the sets, not with observed x nodes
    stored = sum(p.numel() for p in decoder.parameters())
    assert stored < 60 * (int(sets.sum()) + sets.shape[0]) < sets.numel()
    nodes = torch.randn(3, D, dtype=torch.float64, requires_grad=True)
    p = decoder(nodes)
    for i in torch.randperm(sets.shape[0])[:25].tolist():
        for field in ("loc", "scale"):
            (g,) = torch.autograd.grad(getattr(p, field)[:, i].sum(), nodes, retain_graph=True)
            seen = g.abs().sum(0) != 0
            if field == "loc":
                assert torch.equal(seen, sets[i]), i  # every parent, and nothing else
            else:
                assert not (seen & ~sets[i]).any(), i


def test_small_networks_keep_the_dense_decoder():
    bn = load_network("ecoli70").graph
    split = latent_split(bn, default_latent_rule("ecoli70"))
    sets = bn.adjacency()[split.observed_index()]
    assert Decoder(sets, 4, 2, 1e-3).layout == "dense"
    decoder = Decoder(sets, 4, 2, 1e-3, layout="block-sparse")
    assert decoder.layout == "block-sparse" and decoder.net.layout == "block-sparse"
    assert all(isinstance(layer, BlockSparseLinear) for layer in decoder.net.layers)
    linear = Decoder(sets, 4, 2, 1e-3, mean="linear", layout="block-sparse").linear
    assert isinstance(linear, BlockSparseLinear)

"""The block-sparse path: the same function as the dense path, memory by edges, exact at 2,000 nodes."""

import pytest
import torch

from sirenvae.flows import GraphicalResidualFlow, RootFinding
from sirenvae.flows.residual import graph_layout
from sirenvae.layers import BlockSparseLinear
from sirenvae.masks import check_adjacency, graphical_blocks, graphical_masks, topological_levels


def random_graph(D, p, context=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.tril(torch.rand(D, D, generator=g) < p, -1)
    perm = torch.randperm(D, generator=g)
    C = torch.rand(D, context, generator=g) < 0.5 if context else None
    return A[perm][:, perm], C


def sparse_dag(D, parents=2, seed=0):
    """About ``parents`` parents per node among the earlier ones, relabelled at random."""
    g = torch.Generator().manual_seed(seed)
    child = torch.arange(1, D).repeat_interleave(parents)
    parent = (torch.rand(child.numel(), generator=g) * child).long()
    A = torch.zeros(D, D, dtype=torch.bool)
    A[child, parent] = True
    perm = torch.randperm(D, generator=g)
    return A[perm][:, perm]


def copy_dense_to_sparse(dense, sparse):
    """Gives ``sparse`` the weights, power vectors and other parameters of ``dense``."""
    state = dense.state_dict()
    for (_, d), (_, s) in zip(dense.named_modules(), sparse.named_modules(), strict=True):
        if isinstance(s, BlockSparseLinear):
            s.weight.data.copy_(s.structure.blocks_of(d.weight.detach() * d.mask))
            s.bias.data.copy_(d.bias.data)
            s.u.copy_(d.u)
            s.v.copy_(d.v)
    for name, p in sparse.named_parameters():
        if ".layers." in name:
            continue
        if name == "affine.coupling":
            p.data.copy_(state[name][sparse.affine.child, sparse.affine.parent])
        else:
            p.data.copy_(state[name])


@pytest.mark.parametrize("seed", range(12))
def test_blocks_are_the_dense_masks(seed):
    D = 1 + 3 * seed
    A, C = random_graph(D, 0.3, context=seed % 3, seed=seed)
    for singletons in (False, True):
        kw = {"hidden_per_set": 1 + seed % 3, "hidden_layers": 1 + seed % 3, "singletons": singletons}
        dense, blocks = graphical_masks(A, C, **kw), graphical_blocks(A, C, **kw)
        assert blocks.units == dense.units and blocks.effective_weights == dense.effective_weights
        for M, layer in zip(dense.layers, blocks.layers, strict=True):
            assert torch.equal(layer.dense(), M)
            diagonal = torch.arange(D)
            assert torch.equal(layer.rows[:D], diagonal) and torch.equal(layer.cols[:D], diagonal)


CONFIGS = [
    ("ancestors", False, False, 2),
    ("ancestors", True, True, 3),
    ("parents", False, True, 2),
    ("parents", True, False, 1),
]


@pytest.mark.parametrize("conditioning, singletons, affine, hidden_layers", CONFIGS)
def test_same_weights_give_the_same_flow(conditioning, singletons, affine, hidden_layers):
    """Outputs, log-dets, inverses, certificates and gradients agree with the dense path."""
    A, C = random_graph(15, 0.3, context=2, seed=hidden_layers)
    kw = dict(
        blocks=2, conditioning=conditioning, affine=affine, singletons=singletons, hidden_layers=hidden_layers
    )
    torch.manual_seed(0)
    dense = GraphicalResidualFlow(A, C, hidden_per_set=2, layout="dense", **kw).double()
    sparse = GraphicalResidualFlow(A, C, hidden_per_set=2, layout="block-sparse", **kw).double()
    copy_dense_to_sparse(dense, sparse)
    z, c = torch.randn(6, 15, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    # training mode, same power vectors: identical up to round-off, gradients too
    (y1, l1), (y2, l2) = dense(c).call_and_ladj(z), sparse(c).call_and_ladj(z)
    torch.testing.assert_close(y2, y1, rtol=0, atol=1e-10)
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-10)
    (l1.sum() + y1.square().sum()).backward()
    (l2.sum() + y2.square().sum()).backward()
    for a, b in zip(dense.blocks[0].layers, sparse.blocks[0].layers, strict=True):
        torch.testing.assert_close(b.to_dense(b.weight.grad), a.weight.grad * a.mask, atol=1e-9, rtol=0)
    # eval mode: the dense path syncs by SVD, the sparse one converges the power iteration
    dense.eval(), sparse.eval()
    (y1, l1), (y2, l2) = dense(c).call_and_ladj(z), sparse(c).call_and_ladj(z)
    torch.testing.assert_close(y2, y1, rtol=0, atol=1e-9)
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-9)
    torch.testing.assert_close(sparse(c).inv(y1), dense(c).inv(y1), rtol=0, atol=1e-8)
    torch.testing.assert_close(sparse.certify(), dense.certify())
    assert (sparse.certify() < 1).all()


@pytest.mark.parametrize("conditioning", ["ancestors", "parents"])
def test_sparse_log_det_and_jacobian_follow_the_graph(conditioning):
    A, C = random_graph(25, 0.15, context=2, seed=3)
    torch.manual_seed(1)
    kw = dict(blocks=2, conditioning=conditioning, affine=True, hidden_per_set=2)
    flow = GraphicalResidualFlow(A, C, layout="block-sparse", **kw).double().eval()
    flow.root_finding = RootFinding(atol=1e-10)
    z, c = torch.randn(25, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: flow(c)(v), z)
    assert torch.allclose(flow(c).call_and_ladj(z)[1], torch.linalg.slogdet(J)[1], atol=1e-9)
    block = flow.blocks[0]
    Jb = torch.autograd.functional.jacobian(lambda v: block(c)(v), z) if conditioning == "ancestors" else J
    allowed = A | torch.eye(25, dtype=torch.bool)
    assert (Jb[~allowed] == 0).all() and (Jb[allowed] != 0).float().mean() > 0.9
    torch.testing.assert_close(flow(c).inv(flow(c)(z)), z, rtol=0, atol=1e-8)


@pytest.mark.parametrize("conditioning", ["ancestors", "parents"])
def test_two_thousand_nodes_round_trip(conditioning):
    """At 2,000 nodes the flow is built by edges (automatically) and inverts to the tolerance."""
    A = sparse_dag(2000, seed=4)
    assert graph_layout("auto", A, hidden_per_set=2) == "block-sparse"
    torch.manual_seed(2)
    flow = GraphicalResidualFlow(A, blocks=2, conditioning=conditioning, affine=True, hidden_per_set=2)
    assert flow.layout == "block-sparse" and flow.effective_weights < 200_000
    flow.eval()
    z = torch.randn(2, 2000)
    y, ladj = flow().call_and_ladj(z)
    assert torch.isfinite(ladj).all()
    result = flow().solve(y, atol=1e-5)
    assert result.converged and (result.z - z).abs().max() < 1e-4


def test_log_det_at_scale_is_the_sum_of_the_jacobian_diagonal():
    """On 300 nodes, the carried diagonal equals the autograd diagonal of the triangular Jacobian."""
    A = sparse_dag(300, seed=5)
    torch.manual_seed(3)
    block = (
        GraphicalResidualFlow(A, blocks=1, hidden_per_set=2, layout="block-sparse").double().eval().blocks[0]
    )
    z = torch.randn(300, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: block()(v), z)
    _, d = block().g(z[None])
    torch.testing.assert_close(d[0], J.diagonal() - 1, rtol=0, atol=1e-10)
    assert (J[~(A | torch.eye(300, dtype=torch.bool))] == 0).all()


def test_the_switch_is_automatic_and_overridable():
    small, large = random_graph(20, 0.3)[0], sparse_dag(400)
    assert graph_layout("auto", small) == "dense" and graph_layout("auto", large) == "block-sparse"
    assert GraphicalResidualFlow(small).layout == "dense"
    assert GraphicalResidualFlow(large, blocks=1).layout == "block-sparse"
    assert GraphicalResidualFlow(small, layout="block-sparse").layout == "block-sparse"
    assert GraphicalResidualFlow(large, blocks=1, layout="dense").layout == "dense"
    # the layout is the layers' (and the affine step's), all of one kind
    flow = GraphicalResidualFlow(large, blocks=1, affine=True)
    assert {m.layout for m in flow.modules() if hasattr(m, "layout")} == {"block-sparse"}
    with pytest.raises(ValueError, match="unknown layout 'sparse'"):
        GraphicalResidualFlow(small, layout="sparse")


def test_dense_checkpoints_keep_their_keys():
    A = random_graph(6, 0.4)[0]
    flow = GraphicalResidualFlow(A, blocks=1, affine=True, hidden_per_set=2)
    state = flow.state_dict()
    assert state["transforms.0.layers.0.weight"].shape == (12, 6)
    assert state["transforms.0.layers.0.mask"].shape == (12, 6)
    assert state["affine.coupling"].shape == (6, 6) and "affine.mask" in state
    GraphicalResidualFlow(A, blocks=1, affine=True, hidden_per_set=2).load_state_dict(state)


def test_levels_by_edges_and_cycles():
    A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    assert topological_levels(A).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="not acyclic"):
        check_adjacency(A | A.T)


@pytest.mark.parametrize("conditioning", ["ancestors", "parents"])
def test_dense_checkpoints_load_on_the_sparse_path(conditioning):
    """A checkpoint saved by the dense path loads into the same flow on the sparse path."""
    A, C = random_graph(12, 0.3, context=2, seed=7)
    kw = dict(blocks=2, conditioning=conditioning, affine=True, hidden_per_set=2)
    torch.manual_seed(0)
    dense = GraphicalResidualFlow(A, C, layout="dense", **kw).double().eval()
    sparse = GraphicalResidualFlow(A, C, layout="block-sparse", **kw).double()
    sparse.load_state_dict(dense.state_dict())
    sparse.eval()
    z, c = torch.randn(4, 12, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    (y1, l1), (y2, l2) = dense(c).call_and_ladj(z), sparse(c).call_and_ladj(z)
    torch.testing.assert_close(y2, y1, rtol=0, atol=1e-9)
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-9)
    other = GraphicalResidualFlow(random_graph(12, 0.3, context=2, seed=8)[0], C, layout="block-sparse", **kw)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(dense.state_dict())
    # and back: the sparse checkpoint loads into dense layers, the dense flow's weights exactly
    again = GraphicalResidualFlow(A, C, layout="dense", **kw).double()
    again.load_state_dict(sparse.state_dict())
    for name, value in dense.state_dict().items():
        if not name.endswith((".u", ".v")):  # the power vectors as the sparse layers synced them
            torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0, msg=name)
    y3, l3 = again.eval()(c).call_and_ladj(z)
    torch.testing.assert_close(y3, y1, rtol=0, atol=1e-9)
    torch.testing.assert_close(l3, l1, rtol=0, atol=1e-9)


def test_sync_by_lanczos_reaches_the_exact_norm(monkeypatch):
    """When power iteration is cut short, Lanczos still gives the layer's exact spectral norm."""
    import sirenvae.layers.blocks as sparse_module

    monkeypatch.setattr(sparse_module, "SYNC_POWER_ITERATIONS", 5)
    torch.manual_seed(4)
    flow = GraphicalResidualFlow(
        sparse_dag(300, seed=6), blocks=1, hidden_per_set=2, layout="block-sparse"
    ).double()
    for layer in flow.blocks[0].layers:
        with torch.no_grad():
            layer.weight.mul_(1 + torch.randn_like(layer.weight))
    flow.eval()
    for layer in flow.blocks[0].layers:
        W = layer.masked()
        exact = torch.linalg.matrix_norm(layer.to_dense(W)[:, : layer.bounded_columns], ord=2)
        torch.testing.assert_close(layer.sigma(W), exact, rtol=1e-9, atol=0)


def test_two_thousand_nodes_diagonal_and_sparsity_by_finite_differences():
    """At 2,000 nodes, a block's carried diagonal matches central differences, and a change in
    ``z_j`` moves only ``g_j`` and the children of ``j`` (sampled variables, float64)."""
    A = sparse_dag(2000, seed=9)
    torch.manual_seed(5)
    block = GraphicalResidualFlow(A, blocks=1, hidden_per_set=2).double().eval().blocks[0]
    assert block.layout == "block-sparse"
    t = block()
    z = torch.randn(1, 2000, dtype=torch.float64)
    g0, d = t.g(z)
    h = 1e-6
    for j in torch.randperm(2000, generator=torch.Generator().manual_seed(0))[:12].tolist():
        e = torch.zeros_like(z)
        e[0, j] = h
        plus, minus = t.g(z + e, False)[0], t.g(z - e, False)[0]
        assert abs((plus - minus)[0, j] / (2 * h) - d[0, j]) < 1e-6
        moved = torch.nonzero((plus - g0)[0]).flatten()
        allowed = set(torch.nonzero(A[:, j]).flatten().tolist()) | {j}
        assert set(moved.tolist()) <= allowed and j in set(moved.tolist())

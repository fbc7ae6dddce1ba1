import math

import pytest
import torch

from registry import CASES, DTYPES, PARENT_CASES, TRANSFORMS
from sirenvae.flows import GRF, ConvergenceError, Flow, GraphicalResidualFlow, RootFinding, StandardNormalBase

PARAMS = [pytest.param(c, d, id=f"{c}-{d}") for c in CASES for d in DTYPES]
TOL = {"float64": 1e-6, "float32": 2e-3}


def build(case, dtype, device="cpu"):
    return CASES[case].build(DTYPES[dtype], device).eval()


def fwd(flow, z, c=None):
    return flow(c).call_and_ladj(z)


def inputs(flow, *batch, seed=0, dtype=None, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or flow.blocks[0].layers[0].weight.dtype
    z = torch.randn(*batch, flow.features, generator=g, dtype=dtype).to(device)
    c = None
    if flow.context_features:
        c = torch.randn(*batch, flow.context_features, generator=g, dtype=dtype).to(device)
    return z, c


def jacobian(fn, z):
    return torch.autograd.functional.jacobian(fn, z)


def closure(A):
    R = A.clone() | torch.eye(A.shape[0], dtype=torch.bool)
    for _ in range(A.shape[0]):
        R = R | ((R.float() @ R.float()) > 0)
    return R


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_block_jacobian_sparsity_equals_graph(case, dtype, device):
    flow = build(case, dtype, device)
    A, _ = CASES[case].graph()
    allowed = (A | torch.eye(A.shape[0], dtype=torch.bool)).to(device)
    z, c = inputs(flow, 3, device=device)
    block = flow.blocks[0]
    for b in range(3):
        cb = None if c is None else c[b]
        J = jacobian(lambda v, cb=cb: block(cb)(v), z[b])
        assert (J[~allowed] == 0).all()
        # an edge of the graph is a real dependence (random weights: nonzero almost surely)
        assert (J[allowed] != 0).float().mean() > 0.9


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_stack_jacobian_zero_outside_ancestors(case, dtype, device):
    flow = build(case, dtype, device)
    A, _ = CASES[case].graph()
    R = closure(A).to(device)
    z, c = inputs(flow, device=device)
    J = jacobian(lambda v: flow(c)(v), z)
    assert (J[~R] == 0).all()


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_log_det_equals_slogdet_both_directions(case, dtype, device):
    flow = build(case, dtype, device)
    tol = TOL[dtype]
    atol = 1e-10 if dtype == "float64" else 1e-6
    z, c = inputs(flow, 2, device=device)
    y, ladj = fwd(flow, z, c)
    assert torch.equal(flow(c)(z), y)
    assert torch.equal(flow(c).log_abs_det_jacobian(z, y), ladj)
    flow.root_finding = RootFinding(atol=atol)
    for b in range(2):
        cb = None if c is None else c[b]
        J = jacobian(lambda v, cb=cb: flow(cb)(v), z[b])
        sign, logabs = torch.linalg.slogdet(J)
        assert sign > 0
        assert abs(logabs.item() - ladj[b].item()) <= tol
        # inverse direction: the autograd Jacobian of the inverse (implicit gradients)
        Ji = jacobian(lambda w, cb=cb: flow(cb).inv(w), y[b])
        assert abs(torch.linalg.slogdet(Ji)[1].item() + ladj[b].item()) <= tol
        # the inverse transform's own log-determinant is the negative
        _, ladj_inv = flow(cb).inv.call_and_ladj(y[b])
        assert abs(ladj_inv.item() + ladj[b].item()) <= tol


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_inverse_round_trip(case, dtype, device):
    flow = build(case, dtype, device)
    z, c = inputs(flow, 64, device=device)
    z = 3 * z  # well into the tails
    y = flow(c)(z)
    result = flow(c).solve(y, max_iter=50)
    assert result.converged
    # the diagonal Newton iteration converges in a few steps per block, far inside max_iter
    assert len(result.iterations) == len(flow.blocks) and max(result.iterations) <= 15
    tol = 1e-6 if dtype == "float64" else 1e-4
    assert (result.z - z).abs().max() <= tol
    assert (flow(c).inv(y) - z).abs().max() <= tol
    assert torch.equal(flow(c).inv.inv(z), y)


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_spectral_norm_bounded_after_training(case, dtype, device):
    flow = CASES[case].build(DTYPES[dtype], device).train()
    opt = torch.optim.Adam(flow.parameters(), lr=2e-2)
    z, c = inputs(flow, 128, seed=1, device=device)
    z = 4 * z + 1  # a target far from N(0, I) pushes the weights to grow
    for _ in range(100):
        e, ladj = fwd(flow, z, c)
        loss = (0.5 * e.square().sum(-1) - ladj).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    kappa = 0.97
    flow.eval()
    for block in flow.blocks:
        for layer in block.layers:
            assert layer.spectral_norm() <= kappa + 1e-4
    L = len(flow.blocks[0].layers)
    assert (flow.certify() <= kappa**L + 1e-3).all()


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_eval_equals_train_once_converged(case, dtype, device):
    flow = build(case, dtype, device)
    z, c = inputs(flow, 16, device=device)
    y_eval, l_eval = fwd(flow, z, c)
    flow.train()
    y_train, l_train = fwd(flow, z, c)
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert torch.allclose(y_eval, y_train, atol=tol) and torch.allclose(l_eval, l_train, atol=tol)


def test_eval_does_not_update_power_iteration(device):
    flow = CASES["d5-h2-ctx2"].build(device=device)
    flow.eval()
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    z, c = inputs(flow, 8, device=device)
    flow(c).inv(flow(c)(z))
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())
    flow.train()
    flow(c)
    changed = [k for k, v in flow.state_dict().items() if not torch.equal(before[k], v)]
    assert changed and all(k.endswith((".u", ".v")) for k in changed)


def test_leaving_training_synchronises_the_spectral_estimate(device):
    flow = CASES["d40-h2-ctx3"].build(device=device).train()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(3)  # the estimate now lags far behind
    flow.eval()
    for block in flow.blocks:
        for layer in block.layers:
            W = layer.weight * layer.mask
            exact = torch.linalg.matrix_norm(W[:, : layer.bounded_columns], 2)
            assert abs(layer.sigma(W) - exact) < 1e-10


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_every_parameter_gets_a_gradient(case, dtype, device):
    flow = CASES[case].build(DTYPES[dtype], device).train()
    z, c = inputs(flow, 32, device=device)
    y, ladj = fwd(flow, z, c)
    (y.square().sum() - ladj.sum()).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_state_dict_round_trip(case, dtype, device):
    flow = build(case, dtype, device)
    other = CASES[case].build(DTYPES[dtype], device)
    torch.manual_seed(123)
    other = (
        type(flow)(
            *CASES[case].graph(),
            blocks=CASES[case].blocks,
            hidden_layers=CASES[case].hidden_layers,
            hidden_per_set=CASES[case].hidden_per_set,
            activation=CASES[case].activation,
            singletons=CASES[case].singletons,
            **CASES[case].kwargs,
        )
        .to(DTYPES[dtype])
        .eval()
    )
    z, c = inputs(flow, 8, device=device)
    assert not torch.allclose(other(c)(z), flow(c)(z))
    other.load_state_dict(flow.state_dict())
    y1, l1 = fwd(flow, z, c)
    y2, l2 = fwd(other, z, c)
    assert torch.equal(y1, y2) and torch.equal(l1, l2)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c].context])
@pytest.mark.parametrize("batch", [(), (7,), (2, 3)], ids=str)
def test_context_broadcasts_over_batch_shapes(case, batch, device):
    flow = build(case, "float64", device)
    z, c = inputs(flow, *batch, device=device)
    y, ladj = fwd(flow, z, c)
    assert y.shape == (*batch, flow.features) and ladj.shape == batch
    flat_z, flat_c = z.reshape(-1, flow.features), c.reshape(-1, flow.context_features)
    for i in range(flat_z.shape[0]):
        yi, li = fwd(flow, flat_z[i], flat_c[i])
        assert torch.allclose(yi, y.reshape(-1, flow.features)[i])
        assert torch.allclose(li, ladj.reshape(-1)[i])
    # one context shared by a batch of points, and one point under many contexts
    z5, _ = inputs(flow, 5, seed=3, device=device)
    y5, _ = fwd(flow, z5, c.reshape(-1, flow.context_features)[0])
    assert y5.shape == (5, flow.features)
    cz = torch.randn(*batch, 4, flow.context_features, dtype=torch.float64, device=device)
    yz, _ = fwd(flow, z5[0], cz)
    assert yz.shape == (*batch, 4, flow.features)
    assert torch.allclose(flow(c).inv(y), z, atol=1e-6)


def test_context_columns_are_free_but_z_stays_bounded(device):
    flow = CASES["d5-h2-ctx2"].build(device=device).train()
    first = flow.blocks[0].layers[0]
    with torch.no_grad():
        first.weight[:, flow.features :] *= 50  # a strong context dependence is allowed
    flow.eval()
    assert (flow.certify() < 1).all()
    z, c = inputs(flow, 32, device=device)
    y = flow(c)(z)
    assert torch.allclose(flow(c).inv(y), z, atol=1e-6)


def test_context_is_masked_by_its_adjacency(device):
    flow = build("d5-h2-ctx2", "float64", device)
    _, C = CASES["d5-h2-ctx2"].graph()
    C = C.to(device)
    z, c = inputs(flow, device=device)
    Jc = jacobian(lambda cc: flow.blocks[0](cc)(z), c)
    assert (Jc[~C] == 0).all() and (Jc[C] != 0).all()


def test_newton_needs_fewer_iterations_than_banach(device):
    flow = build("d40-h2-ctx3", "float64", device)
    z, c = inputs(flow, 64, device=device)
    y = flow(c)(3 * z)
    newton = flow(c).solve(y, method="newton")
    banach = flow(c).solve(y, method="banach", max_iter=500)
    assert newton.converged and banach.converged
    assert sum(newton.iterations) < sum(banach.iterations)


def test_non_convergence_raises_or_warns(device):
    flow = build("d12-h3-tanh", "float64", device)
    z, _ = inputs(flow, 16, device=device)
    y = flow()(5 * z)
    flow.root_finding = RootFinding(max_iter=1, atol=1e-12)
    with pytest.raises(ConvergenceError, match="block 1 did not converge"):
        flow().inv(y)
    flow.root_finding = RootFinding(max_iter=1, atol=1e-12, on_fail="warn")
    with pytest.warns(RuntimeWarning, match="did not converge"):
        flow().inv(y)
    result = flow().solve(y)
    assert not result.converged and result.residual > 1e-12
    with pytest.raises(ValueError, match="on_fail"):
        RootFinding(on_fail="ignore")
    with pytest.raises(ValueError, match="method"):
        flow().solve(y, method="bisection")


def test_implicit_gradients(device):
    flow = build("d5-h2-ctx2", "float64", device)
    z, c = inputs(flow, 3, device=device)
    flow.root_finding = RootFinding(atol=1e-12)
    y = flow(c)(z)
    y = y.detach().requires_grad_()
    c = c.detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda y, c: flow(c).inv(y), (y, c), check_undefined_grad=False)
    # F(F^{-1}(y)) = y for every parameter value, so its parameter gradient must vanish
    w = torch.randn_like(y)
    (flow(c)(flow(c).inv(y)) * w).sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is None or p.grad.abs().max() < 1e-8, name


def test_bad_inputs(device):
    A = torch.tensor([[0, 1], [1, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="not acyclic"):
        GraphicalResidualFlow(A)
    with pytest.raises(ValueError, match="square"):
        GraphicalResidualFlow(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="kappa"):
        GraphicalResidualFlow(torch.zeros(2, 2, dtype=torch.bool), kappa=1.0)
    flow = build("d5-h2-ctx2", "float64", device)
    z, c = inputs(flow, device=device)
    with pytest.raises(ValueError, match="needs a context"):
        flow()
    with pytest.raises(ValueError, match="a context with 2 features"):
        flow(torch.zeros(3, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="5 features"):
        flow(c)(torch.zeros(4, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="float32 but the flow's parameters are torch.float64"):
        flow(c.float())(z.float())


def test_zuko_style_diagonal_adjacency_is_accepted():
    A = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)
    flow = GraphicalResidualFlow(A, blocks=1)
    assert not flow.blocks[0].layers[0].mask.all()


def flow_of(A, direction, context_adjacency=None, **kwargs):
    """A normalizing flow (fast density) or the flow of an inverse (fast sampling)."""
    if direction == "normalize":
        return GRF(A, context_adjacency, **kwargs)
    return Flow(GraphicalResidualFlow(A, context_adjacency, **kwargs).inv, StandardNormalBase(A.shape[0]))


@pytest.mark.parametrize("direction", ["normalize", "generate"])
def test_distribution_is_normalised_and_consistent(direction, device):
    torch.manual_seed(0)
    A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
    dist = flow_of(A, direction, blocks=2).double().to(device).eval()
    for m in dist.modules():
        if hasattr(m, "power_iterate"):
            m.power_iterate(100)
    p = dist()
    # the density integrates to one (trapezoid rule on a wide grid)
    t = torch.linspace(-9, 9, 301, dtype=torch.float64, device=device)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1)
    with torch.no_grad():
        dens = p.log_prob(grid).exp()
    mass = torch.trapezoid(torch.trapezoid(dens, t), t)
    assert abs(mass.item() - 1) < 1e-3
    x, log_q = p.rsample_and_log_prob((50,))
    assert torch.allclose(log_q, p.log_prob(x), atol=1e-8)
    assert p.sample((3, 4)).shape == (3, 4, 2)


def test_conditional_distribution_batch_shapes_and_gradients(device):
    torch.manual_seed(0)
    A = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    q = flow_of(A, "generate", torch.ones(3, 4, dtype=torch.bool)).to(device)
    c = torch.randn(7, 4, device=device)
    d = q(c)
    assert d.batch_shape == (7,) and d.event_shape == (3,)
    z, lq = d.rsample_and_log_prob((5,))
    assert z.shape == (5, 7, 3) and lq.shape == (5, 7)
    (lq.sum() + z.square().sum()).backward()
    assert all(p.grad is not None for p in q.parameters())
    prior = GRF(A).to(device)
    s = prior().rsample((10,))
    assert s.shape == (10, 3)
    assert math.isfinite(prior().log_prob(s).sum().item())


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_every_transform_and_its_inverse(name, device):
    """zuko's checks for every lazy transform and its .inv: Jacobian pattern, ladj vs slogdet,
    round trip, and that the inverse of the inverse is the transform.
    """
    case, make, pattern = TRANSFORMS[name]
    lazy = make().to(device).eval()
    A, C = case.graph()
    allowed = A | torch.eye(A.shape[0], dtype=torch.bool)
    if pattern == "ancestors":
        allowed = closure(A)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, A.shape[0], generator=g, dtype=torch.float64).to(device)
    c = None if C is None else torch.randn(3, C.shape[1], generator=g, dtype=torch.float64).to(device)
    for b in range(3):
        t = lazy(None if c is None else c[b])
        y, ladj = t.call_and_ladj(z[b])
        J = jacobian(t, z[b])
        assert (J.cpu()[~allowed] == 0).all()
        sign, logabs = torch.linalg.slogdet(J)
        assert sign > 0 and abs(logabs.item() - ladj.item()) <= 1e-6
        assert torch.allclose(t.inv(y), z[b], atol=1e-6)
        assert torch.allclose(t.inv.inv(z[b]), y, atol=1e-12)
        _, ladj_inv = t.inv.call_and_ladj(y)
        assert abs(ladj_inv.item() + ladj.item()) <= 1e-6


@pytest.mark.parametrize("name", list(PARENT_CASES))
def test_parent_conditioned_gradients(name, device):
    """Implicit gradients of the generation-wise inverse, and a gradient for every parameter."""
    case = PARENT_CASES[name]
    flow = case.build(device=device).eval()
    flow.root_finding = RootFinding(atol=1e-12)
    z, c = inputs(flow, 2, device=device, dtype=torch.float64)
    y = flow(c)(z).detach().requires_grad_()
    if c is not None:
        c = c.detach().requires_grad_()
    args = (y,) if c is None else (y, c)
    assert torch.autograd.gradcheck(lambda y, c=c: flow(c).inv(y), args, check_undefined_grad=False)
    flow.train()
    u, ladj = fwd(flow, z, None if c is None else c.detach())
    (u.square().sum() - ladj.sum()).backward()
    for pname, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_affine_step_alone_is_a_linear_gaussian_bn(device):
    """u = S^{-1}((I - B) z - b) over N(0, I): z ~ N((I - B)^{-1} b, (I - B)^{-1} S^2 (I - B)^{-T})."""
    case = PARENT_CASES["parents-T0-ctx-affine"]
    flow = case.build(device=device).eval()
    A, C = case.graph()
    a = flow.affine
    with torch.no_grad():
        a.shift.normal_()
        a.log_scale.normal_(0, 0.5)
    c = torch.randn(flow.context_features, dtype=torch.float64, device=device)
    I = torch.eye(flow.features, dtype=torch.float64, device=device)
    L = I - a.coupling * a.mask
    mean = torch.linalg.solve(L, a.shift + (a.context_coupling * a.context_mask) @ c)
    L_inv = torch.linalg.inv(L)
    cov = L_inv @ torch.diag(torch.exp(2 * a.log_scale)) @ L_inv.T
    exact = torch.distributions.MultivariateNormal(mean, cov)
    p = Flow(flow, StandardNormalBase(flow.features)).to(device)(c)
    x = exact.sample((50,))
    assert torch.allclose(p.log_prob(x), exact.log_prob(x), atol=1e-10)
    # the stacked form with the affine step alone is the same distribution
    assert flow.conditioning == "parents" and len(flow.blocks) == 0


def test_parent_conditioning_options_are_checked():
    A = torch.tensor([[0, 0], [1, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="conditioning must be one of ancestors, parents"):
        GraphicalResidualFlow(A, conditioning="children")
    with pytest.raises(ValueError, match="blocks must be >= 1"):
        GraphicalResidualFlow(A, blocks=0)
    assert len(GraphicalResidualFlow(A, blocks=0, affine=True)) == 1


def test_affine_stacks_solve_report_and_check_the_whole_map(device):
    """solve() works through the affine step (paper's stack), and the parent-conditioned inverse
    checks its tolerance on the whole map, after the affine step's scaling.
    """
    A = torch.diag(torch.ones(7, dtype=torch.bool), -1)  # a chain of 8
    flow = GraphicalResidualFlow(A, blocks=2, affine=True).double().to(device).eval()
    z = torch.randn(16, 8, dtype=torch.float64, device=device)
    y = flow()(z)
    result = flow().solve(y)
    assert result.converged and torch.allclose(result.z, z, atol=1e-6)
    pc = GraphicalResidualFlow(A, blocks=2, conditioning="parents", affine=True).double().to(device).eval()
    with torch.no_grad():
        pc.affine.log_scale.fill_(-4.0)
        pc.affine.coupling.copy_(2.0 * pc.affine.mask)
    t = pc()
    u = t(z)
    result = t.solve(u)
    miss = (t(result.z) - u).abs().max().item()
    # the tolerance holds per block (the blocks' units); the whole map's residual is reported
    assert result.converged and result.residual >= miss
    assert (t(result.z) - u).abs().mul(pc.affine.log_scale.exp()).max() <= 1e-5
    with pytest.raises(
        ValueError, match="inputs are torch.float32 but the flow's parameters are torch.float64"
    ):
        GraphicalResidualFlow(A, blocks=0, affine=True).double()()(z.float())


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("gain", [0.05, 1.0, 20.0])
def test_blocks_prepared_in_one_pass_match_block_by_block(context, gain):
    """Values, power vectors and the gradients of every parameter (the stacked pass has its own
    backward) agree, with the spectral bound inactive (small weights), mixed, and active."""
    import copy

    from sirenvae.flows.residual import prepare_blocks

    torch.manual_seed(0)
    A = torch.tril(torch.rand(6, 6) < 0.5, -1)
    C = torch.rand(6, 2) < 0.5 if context else None
    flow = GraphicalResidualFlow(A, C, blocks=3, layout="dense").double().train()
    with torch.no_grad():
        for name, p in flow.named_parameters():
            p.mul_(gain) if name.endswith("weight") else p.add_(torch.randn_like(p))
    twin = copy.deepcopy(flow)
    for _ in range(2):  # the power vectors move the same way
        stacked = prepare_blocks(flow.blocks)
        apart = [b.prepare() for b in twin.blocks]
        loss = {}
        for key, prepared in (("stacked", stacked), ("apart", apart)):
            torch.manual_seed(1)
            loss[key] = sum(
                (t * torch.randn_like(t)).sum() for ps in prepared for p in ps for t in p if t is not None
            )
        for ps, pa in zip(stacked, apart, strict=True):
            for s, a in zip(ps, pa, strict=True):
                assert (s is None) == (a is None)
                if s is not None:
                    torch.testing.assert_close(s, a, rtol=0, atol=1e-12)
        g_stacked = torch.autograd.grad(loss["stacked"], list(flow.parameters()))
        g_apart = torch.autograd.grad(loss["apart"], list(twin.parameters()))
        for (name, _), gs, ga in zip(flow.named_parameters(), g_stacked, g_apart, strict=True):
            torch.testing.assert_close(gs, ga, rtol=1e-10, atol=1e-12, msg=name)
        for (name, b1), b2 in zip(flow.named_buffers(), twin.buffers(), strict=True):
            torch.testing.assert_close(b1, b2, rtol=0, atol=1e-12, msg=name)

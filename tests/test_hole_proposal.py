"""The proposal of missing cells with children: Markov-blanket inputs, unbiased weights, a better ESS."""

import copy
import math
from dataclasses import replace

import pytest
import torch

from helpers import SMALL_LATENT, TINY, rows, small_network
from sirenvae.graph import LatentSplit
from sirenvae.models import ModelConfig, build_model
from sirenvae.models.config import LEGACY
from sirenvae.models.holes import blanket_sets
from sirenvae.objectives import evaluate_rows, iwae
from sirenvae.pipeline import TrainOptions, train_model
from sirenvae.training import FitConfig

HOLEY = replace(TINY, conditioning="parents", affine=True, mask_inputs=True)


def split():
    return LatentSplit(small_network().graph, SMALL_LATENT)


def holey_rows(n, seed, share=0.3):
    x = rows(small_network(), SMALL_LATENT, n, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    miss = torch.rand(x.shape, generator=g) < share
    miss[:, 2] &= ~(miss[:, 0] & miss[:, 1])  # every row keeps a cell
    return x.masked_fill(miss, math.nan)


def test_which_models_get_a_proposal():
    """Graph variants with holes in training get one for continuous nodes with children (x1 -> x3);
    without holes, for the VAE (no observed node has a child there) and for old runs, none.
    """
    model = build_model(split(), HOLEY)
    assert model.holes is not None and model.holes.targets.tolist() == [0]  # x1; x2, x3 are leaves
    assert build_model(split(), replace(HOLEY, mask_inputs=False)).holes is None
    assert build_model(split(), replace(HOLEY, hole_proposal=False)).holes is None
    assert build_model(split(), replace(HOLEY, variant="vae")).holes is None
    assert ModelConfig.from_dict({"mask_inputs": True}).hole_proposal is LEGACY["hole_proposal"] is False
    typed = replace(HOLEY, types={"x1": "binary"})  # a discrete hole keeps the decoder's draw
    assert build_model(split(), typed).holes is None


def test_the_proposal_reads_only_the_markov_blanket():
    """x1's blanket: its parent z1, its child x3 and x3's other parent z2 (and x3's presence bit)."""
    s = split()
    model = build_model(s, HOLEY).double()
    for p in model.holes.parameters():
        torch.nn.init.normal_(p)
    nodes = torch.randn(1, len(s.graph), dtype=torch.float64, requires_grad=True)
    present = torch.rand(1, len(s.observed), dtype=torch.float64, requires_grad=True)
    a, b = model.holes(nodes, present)
    seen = set()
    for out in (a[0, 0], b[0, 0]):
        gn, gp = torch.autograd.grad(out, (nodes, present), retain_graph=True)
        seen |= {s.graph.nodes[k] for k in gn[0].nonzero().flatten().tolist()}
        seen |= {"bit:" + s.observed[k] for k in gp[0].nonzero().flatten().tolist()}
    assert seen == {"z1", "z2", "x3", "bit:x3"}
    assert blanket_sets(s, [0]).sum().item() == 4
    assert (a[0, 1:] == 0).all() and (b[0, 1:] == 0).all()  # no proposal for the leaves


def test_an_untrained_proposal_is_the_decoder_conditional():
    """Its last layer starts at zero: the same draws and weights as without it, bit for bit."""
    model = build_model(split(), HOLEY).double().eval()
    blind = copy.deepcopy(model)
    blind.holes = None
    x = holey_rows(20, seed=3)
    out = []
    for m in (model, blind):
        torch.manual_seed(0)
        out.append(m.importance_samples(x, 7, 2))
    assert torch.equal(out[0][1], out[1][1]) and torch.equal(out[0][2], out[1][2])


@pytest.mark.parametrize("family", ["normal", "studentt", "lognormal"])
def test_a_shifted_proposal_keeps_the_estimate_of_p_x_obs(family):
    """Any proposal gives an unbiased weight: a deliberately off one (random outputs) estimates the
    same log p(x_obs) as the decoder's own draws, within Monte-Carlo error, at large K; for each
    continuous family of the missing node (its noise density enters the proposal's).
    """
    model = build_model(split(), replace(HOLEY, types={"x1": family})).double().eval()
    blind = copy.deepcopy(model)
    blind.holes = None
    torch.manual_seed(5)
    for p in model.holes.parameters():
        p.data.normal_(0.0, 0.3)
    x = rows(small_network(), SMALL_LATENT, 3, seed=9, dtype=torch.float64)
    x[:, 0] = math.nan  # x1, which x3 reads
    with torch.no_grad():
        z = torch.zeros(4, 3, 2, dtype=torch.float64)
        filled, log_ratio = model.propose_holes(model.standardize(x), ~x.isnan(), z)
        assert (log_ratio != 0).all()  # the proposal is not the conditional
        assert not filled.isnan().any()
        torch.manual_seed(1)
        shifted = iwae(model, x, 40000)
        torch.manual_seed(2)
        plain = iwae(blind, x, 40000)
    assert torch.allclose(shifted, plain, atol=0.03), (shifted, plain)


@pytest.fixture(scope="module")
def trained_on_holes():
    x = holey_rows(300, seed=0)
    torch.manual_seed(0)
    model, _ = train_model(
        split(), x.float(), model_config=HOLEY,
        fit_config=FitConfig(max_epochs=80, patience=80), options=TrainOptions(warmup_steps=50),
    )  # fmt: skip
    return model.double().eval()


def test_training_moves_the_proposal_towards_the_posterior(trained_on_holes):
    """With x1 missing, x3 says much about it: the learned proposal's weights are more even than
    the decoder conditional's on the same model (a larger effective sample size)."""
    model = trained_on_holes
    assert any(p.abs().sum() > 0 for p in model.holes.net.layers[-1].parameters())
    blind = copy.deepcopy(model)
    blind.holes = None
    x = rows(small_network(), SMALL_LATENT, 300, seed=11, dtype=torch.float64)
    x[:, 0] = math.nan
    ess = []
    for m in (model, blind):
        torch.manual_seed(0)
        ess.append(evaluate_rows(m, x, importance_samples=50, defensive=0.0)["ess"].median().item())
    assert ess[0] > 1.2 * ess[1], ess


def test_imputation_and_checkpoints_carry_the_proposal(trained_on_holes, tmp_path):
    from sirenvae.imputation import impute

    model = trained_on_holes
    x = holey_rows(50, seed=4)
    torch.manual_seed(0)
    filled = impute(model, x, samples=200)
    present = ~x.isnan()
    assert torch.equal(filled.mean[present], x[present]) and not filled.mean.isnan().any()
    rebuilt = build_model(model.split, model.config).double()
    rebuilt.load_state_dict(model.state_dict())  # strict: the proposal's weights are in the state
    rebuilt.eval()
    torch.manual_seed(0)
    again = impute(rebuilt, x, samples=200)
    assert torch.allclose(again.mean, filled.mean, atol=1e-6)  # eval-mode spectral vectors: float order


def test_a_scale_context_moves_the_affine_log_scales_exactly():
    """log|det| of the heteroscedastic affine step is autograd's slogdet for every context, the
    inverse round-trips, the scales move only through the allowed context columns, and at zero
    effect the step is the plain one bit for bit.
    """
    from sirenvae.flows import GraphAffine

    torch.manual_seed(0)
    A = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    C = torch.ones(3, 4, dtype=torch.bool)
    E = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    plain = GraphAffine(A, C).double()
    step = GraphAffine(A, C, scale_context=E).double()
    step.load_state_dict(plain.state_dict(), strict=False)
    c = torch.randn(5, 4, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64)
    u0, l0 = plain(c).call_and_ladj(z)
    u1, l1 = step(c).call_and_ladj(z)
    assert torch.equal(u0, u1) and torch.equal(l0, l1)
    with torch.no_grad():
        step.scale_coupling.normal_()
    u, ladj = step(c).call_and_ladj(z)
    for i in range(5):
        J = torch.autograd.functional.jacobian(lambda v, i=i: step(c[i]).call_and_ladj(v)[0], z[i])
        assert torch.allclose(torch.linalg.slogdet(J)[1], ladj[i], atol=1e-10)
    assert torch.allclose(step(c).inv(u), z, atol=1e-10)
    moved = c.clone()
    moved[:, :2] += 1.0  # columns that only shift: the scales stay
    assert torch.allclose(step(moved).call_and_ladj(z)[1], ladj)
    moved[:, 3] += 1.0  # a presence bit of variables 1 and 2
    assert not torch.allclose(step(moved).call_and_ladj(z)[1], ladj)


def test_the_encoder_scales_read_the_presence_bits_only_with_holes():
    model = build_model(split(), HOLEY)
    step = next(m for m in model.encoder.modules() if type(m).__name__ == "GraphAffine")
    bits = step.scale_mask[:, -len(model.observed) :]
    assert bits.any() and not step.scale_mask[:, : -len(model.observed)].any()
    assert torch.equal(bits, step.context_mask[:, -len(model.observed) :])  # wired like the bits
    for config in (replace(HOLEY, mask_scale=False), replace(HOLEY, mask_inputs=False)):
        affine = next(
            m for m in build_model(split(), config).encoder.modules() if type(m).__name__ == "GraphAffine"
        )
        assert affine.scale_coupling is None
    assert ModelConfig.from_dict({"mask_inputs": True}).mask_scale is False

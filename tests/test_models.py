import math

import pytest
import torch

from helpers import SMALL_LATENT, TINY, float64, rows, small_network
from sirenvae.graph import BayesianNetwork, LatentSplit
from sirenvae.inversion import faithful_inverse
from sirenvae.models import VARIANTS, ModelConfig, SIReNVAE, build_model, variant_graph
from sirenvae.networks import load_network
from sirenvae.objectives import elbo


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_one_class_with_finite_elbo_and_gradients(variant):
    net = small_network()
    torch.manual_seed(0)
    model = build_model(LatentSplit(net.graph, SMALL_LATENT), TINY, variant=variant)
    x = rows(net, SMALL_LATENT, 64)
    model.set_standardization(x)
    e = elbo(model, x, 3)
    assert e.shape == (64,) and torch.isfinite(e).all()
    (-e.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert isinstance(model, SIReNVAE)
    assert isinstance(model.prior_given(model.standardize(x)), torch.distributions.Distribution)
    assert isinstance(model.encoder(model.standardize(x)), torch.distributions.Distribution)


def test_variant_graphs():
    bn = load_network("arithmetic-circuit").graph
    Z = tuple(f"z{i}" for i in range(6))
    split = LatentSplit(bn, Z)
    ind = variant_graph(split, "ind")
    assert not any(p in Z for z in Z for p in ind.parents(z))
    assert all(ind.parents(x) == bn.parents(x) for x in ("x0", "x1"))
    fc = variant_graph(split, "fc")
    order = [v for v in fc.nodes if v in Z]
    assert all(set(fc.parents(z)) >= set(order[: order.index(z)]) for z in Z)
    assert variant_graph(split, "true") is bn
    with pytest.raises(ValueError, match="uses no graph"):
        variant_graph(split, "vae")


def test_decoder_and_encoder_follow_the_graphs():
    net = small_network()
    g = net.graph
    torch.manual_seed(0)
    model = float64(build_model(LatentSplit(g, SMALL_LATENT), TINY, variant="true"))
    nodes = torch.randn(len(g), dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: model.decoder(v).loc, nodes)
    for i, v in enumerate(model.observed):
        allowed = {g.index(p) for p in g.parents(v)}
        for j in range(len(g)):
            assert (J[i, j] != 0) == (j in allowed), (v, g.nodes[j])
    # the encoder's context (observed) adjacency is the faithful inverse's
    H = faithful_inverse(g, SMALL_LATENT)
    C = model.encoder.transform.inv.blocks[0].layers[0].mask[:, len(SMALL_LATENT) :]
    expected = H.cross_adjacency(SMALL_LATENT, model.observed)
    per_var = C.view(len(SMALL_LATENT), -1, C.shape[1]).any(1)
    assert torch.equal(per_var, expected)


STACKS = {
    "paper": {},
    "parents-affine": {"conditioning": "parents", "affine": True},
    "affine-only": {"conditioning": "parents", "affine": True, "prior_blocks": 0, "encoder_blocks": 0},
    "parents-encoder": {"conditioning": "parents", "encoder_conditioning": "parents", "affine": True},
}


@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize(
    "graph, latent",
    [
        ("small", SMALL_LATENT),  # an observed parent of an observed node
        ("roots", ("b", "c")),  # an observed root is a parent of the latents
    ],
)
def test_ancestral_samples_agree_with_the_density(graph, latent, stack):
    if graph == "small":
        bn = small_network().graph
    else:
        bn = BayesianNetwork({"a": [], "b": ["a"], "c": ["a", "b"], "d": ["b"], "e": ["c", "d"]})
    torch.manual_seed(1)
    model = float64(build_model(LatentSplit(bn, latent), TINY, variant="true", **STACKS[stack]))
    z, x = model.sample(4000)
    u = model.standardize(x)
    # every observed node is its decoder mean plus sd times a standard normal ...
    p = model.decoder(model.nodes(z, u))
    mean, sd = p.loc, p.scale
    r = (u - mean) / sd
    n = r.shape[0]
    assert (r.mean(0).abs() < 4 / math.sqrt(n)).all()
    assert ((r.std(0) - 1).abs() < 4 * math.sqrt(0.5 / n)).all()
    # ... and the prior maps the latents back to standard normal noise
    eps = model.prior_given(u).transform(z)
    assert (eps.mean(0).abs() < 4 / math.sqrt(n)).all()
    assert ((eps.std(0) - 1).abs() < 4 * math.sqrt(0.5 / n)).all()


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        ModelConfig(variant="nope")
    c = ModelConfig(variant="fc", prior_blocks=3)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown model option"):
        ModelConfig.from_dict({"variant": "true", "wings": 2})


def test_one_builder_per_variant():
    from sirenvae.models.build import BUILDERS

    assert set(BUILDERS) == set(VARIANTS)
    assert all(ModelConfig(variant=v).structured == (v in ("true", "fc", "ind")) for v in VARIANTS)


@pytest.mark.parametrize("stack", ["parents-affine", "parents-encoder"])
def test_parent_conditioned_prior_is_the_bn_factorisation(stack):
    """With conditioning="parents" each latent's noise depends on itself and its parents only
    (latent parents and observed context), whatever the depth; the paper's stack reaches ancestors.
    """
    bn = BayesianNetwork({"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "x": ["d"], "y": ["a", "x"]})
    latent = ("a", "b", "c", "d")
    for options, exact in ((STACKS[stack], True), ({"prior_blocks": 3}, False)):
        torch.manual_seed(0)
        model = float64(build_model(LatentSplit(bn, latent), TINY, variant="true", **options))
        z = torch.randn(4, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(model.prior(None).transform, z)
        beyond_parents = [(i, j) for i, v in enumerate(latent) for j, w in enumerate(latent) if j < i - 1]
        assert all((J[i, j] == 0) == exact for i, j in beyond_parents), options
    assert model.prior.transform.conditioning == "ancestors"


def test_old_configs_load_as_the_paper_stack(monkeypatch):
    old = ModelConfig(variant="true").to_dict()
    for key in ("conditioning", "encoder_conditioning", "affine"):
        old.pop(key)
    c = ModelConfig.from_dict(old)
    assert (c.conditioning, c.encoder_conditioning, c.affine) == ("ancestors", "ancestors", False)
    # what a missing option means is LEGACY's, not the dataclass default's
    import sirenvae.models.config as config_module

    monkeypatch.setitem(config_module.LEGACY, "conditioning", "parents")
    assert ModelConfig.from_dict(old).conditioning == "parents" != ModelConfig().conditioning
    with pytest.raises(ValueError, match="conditioning must be one of ancestors, parents"):
        ModelConfig(conditioning="children")
    with pytest.raises(ValueError, match="prior_blocks must be >= 1"):
        ModelConfig(prior_blocks=0)
    assert ModelConfig(prior_blocks=0, affine=True).prior_blocks == 0


def test_vae_maf_names_its_extra_when_zuko_is_missing(monkeypatch):
    import sys

    import sirenvae.flows

    monkeypatch.setitem(sys.modules, "zuko", None)  # import zuko now raises ImportError
    split = LatentSplit(small_network().graph, SMALL_LATENT)
    with pytest.raises(ImportError, match=r"pip install 'sirenvae\[maf\]'"):
        build_model(split, ModelConfig(variant="vae-maf"))
    assert sirenvae.flows.GRF  # the flows never need zuko

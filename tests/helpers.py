"""Small networks and quick training settings shared by the model tests."""

import torch

from sirenvae.models import ModelConfig
from sirenvae.networks import LinearGaussianNetwork


def small_network() -> LinearGaussianNetwork:
    """z1 -> z2, z1 -> x1, z2 -> x2, z2 -> x3, x1 -> x3 (a latent chain and an observed parent)."""
    doc = {
        "name": "small",
        "nodes": [
            {"name": "z1", "parents": [], "intercept": 1.0, "coefficients": [], "sd": 1.0},
            {"name": "z2", "parents": ["z1"], "intercept": -0.5, "coefficients": [0.8], "sd": 0.6},
            {"name": "x1", "parents": ["z1"], "intercept": 0.0, "coefficients": [1.2], "sd": 0.4},
            {"name": "x2", "parents": ["z2"], "intercept": 2.0, "coefficients": [-1.0], "sd": 0.3},
            {"name": "x3", "parents": ["z2", "x1"], "intercept": 0.5, "coefficients": [0.7, 0.5], "sd": 0.5},
        ],
    }
    return LinearGaussianNetwork.from_json(doc)


SMALL_LATENT = ("z1", "z2")

TINY = ModelConfig(prior_blocks=1, encoder_blocks=1, hidden_per_set=2, decoder_hidden_per_set=2)


def float64(model):
    model.double()
    model.eval()
    return model


def rows(net, latent, n, seed=0, dtype=torch.float32):
    g = net.graph
    x = net.sample(n, seed=seed)
    return x[:, [g.index(v) for v in g.nodes if v not in latent]].to(dtype)

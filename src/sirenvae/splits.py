"""Which nodes are latent, and seeded training and test rows of the shipped networks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit
from sirenvae.networks import ArithmeticCircuit, LinearGaussianNetwork

__all__ = [
    "LATENT_RULES",
    "TEST_SEED_OFFSET",
    "Splits",
    "default_latent_rule",
    "latent_split",
    "sample_splits",
]


LATENT_RULES = {
    # ecoli70, arth150, magic-irri: the non-leaves are latent (docs/results.md, "Setup")
    "leaves-observed": lambda g: [v for v in g.nodes if g.children(v)],
    # magic-niab: the nodes with parents and children are latent (docs/results.md, "Setup")
    "roots-and-leaves-observed": lambda g: [v for v in g.nodes if g.children(v) and g.parents(v)],
}

_DEFAULT_RULES = {
    "ecoli70": "leaves-observed",
    "arth150": "leaves-observed",
    "magic-irri": "leaves-observed",
    "magic-niab": "roots-and-leaves-observed",
    "alarm": ["HR", "VENTLUNG", "ARTCO2"],  # 36 joint hidden states (the benchmark)
    "child": ["Disease", "LungParench", "CardiacMixing"],  # 72
}


def default_latent_rule(network: str) -> str | list[str]:
    """The latent rule of a shipped network (docs/results.md, "Setup")."""
    if network in ("arithmetic-circuit", "arithmetic_circuit"):
        return [f"z{i}" for i in range(6)]
    return _DEFAULT_RULES.get(network, "leaves-observed")


def latent_split(graph: BayesianNetwork, rule: str | Sequence[str]) -> LatentSplit:
    """The split of ``graph`` whose latent nodes follow a named rule (``leaves-observed``,
    ``roots-and-leaves-observed``) or an explicit list of node names (or a comma-separated string).
    """
    if isinstance(rule, str):
        if rule in LATENT_RULES:
            return LatentSplit(graph, LATENT_RULES[rule](graph))
        rule = [v.strip() for v in rule.split(",") if v.strip()]
    return LatentSplit(graph, rule)


#: Test rows are drawn from a generator seeded apart from every training seed.
TEST_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Splits:
    """Training and test rows of the observed nodes, drawn from a known network with a seed."""

    split: LatentSplit
    train: Tensor
    test: Tensor
    train_latent: Tensor
    test_latent: Tensor

    @property
    def observed(self) -> tuple[str, ...]:
        return self.split.observed

    @property
    def latent(self) -> tuple[str, ...]:
        return self.split.latent


def sample_splits(
    network: LinearGaussianNetwork | ArithmeticCircuit,
    split: LatentSplit,
    *,
    train_size: int,
    test_size: int = 2000,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Splits:
    """Draws a training set and a fresh test set; the test set depends on ``seed`` only, so models
    trained on different training sizes with the same seed share it.
    """
    if split.graph != network.graph:
        raise GraphError("the split is of another graph than the network's")
    io, il = split.observed_index(), split.latent_index()
    train = network.sample(train_size, seed=2 * seed)
    test = network.sample(test_size, seed=2 * seed + 1 + TEST_SEED_OFFSET)
    return Splits(
        split,
        train[:, io].to(dtype),
        test[:, io].to(dtype),
        train[:, il].to(dtype),
        test[:, il].to(dtype),
    )

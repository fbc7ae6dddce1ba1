r"""The benchmark networks shipped with the package, with ancestral samplers and exact densities.

The linear-Gaussian networks come from the bnlearn Bayesian network repository (M. Scutari),
as distributed with pgmpy 1.1.2; each JSON file carries its source and citation:

- ``ecoli70``: Schaefer & Strimmer (2005), *Stat. Appl. Genet. Mol. Biol.* 4:32.
- ``arth150``: Opgen-Rhein & Strimmer (2007), *BMC Systems Biology* 1:37.
- ``magic-niab``, ``magic-irri``: Scutari, Howell, Balding & Mackay (2014), *Genetics* 198(1).

The discrete ``alarm`` and ``child`` come from the same repository (via pgmpy's bundled BIF files,
converted by ``benchmarks/convert_bif.py``): Beinlich, Suermondt, Chavez & Cooper (1989), *AIME 89*;
Spiegelhalter & Cowell (1992), *Bayesian Statistics 4* (:class:`DiscreteNetwork`).

The nonlinear ``arithmetic-circuit`` follows Mouton & Kroon (2022), *Graphical Residual Flows*,
after Webb et al. (2018) and Weilbach et al. (2020). Its conditionals are written in code
(:class:`ArithmeticCircuit`); the JSON holds the maths for reference and is never evaluated.

A linear-Gaussian BN :math:`x_i = b_i + \sum_{j \in pa(i)} B_{ij} x_j + \sigma_i \epsilon_i` has the
joint :math:`\mathcal{N}(\mu, \Sigma)` with :math:`\mu = (I - B)^{-1} b` and
:math:`\Sigma = (I - B)^{-1} \mathrm{diag}(\sigma^2) (I - B)^{-\top}`; any subset of variables is
Gaussian with the matching sub-vector and sub-matrix, which gives the oracle log-density.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

import torch
from torch import Tensor

from sirenvae.graph import BayesianNetwork, GraphError
from sirenvae.graph_io import from_dict
from sirenvae.networks.discrete import DiscreteNetwork
from sirenvae.networks.marginal import MarginalEstimate, importance_log_marginal

__all__ = [
    "ArithmeticCircuit",
    "DiscreteNetwork",
    "LinearGaussianNetwork",
    "MarginalEstimate",
    "Oracle",
    "available_networks",
    "importance_log_marginal",
    "load_network",
    "network_document",
    "oracle",
    "oracle_nll",
]

_ALIASES = {
    "arithmetic_circuit": "arithmetic-circuit",
    "magic_niab": "magic-niab",
    "magic_irri": "magic-irri",
}


def available_networks() -> tuple[str, ...]:
    """The names accepted by :func:`load_network`."""
    files = resources.files(__name__)
    return tuple(sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json")))


def network_document(name: str) -> dict[str, Any]:
    """The raw JSON document of a shipped network (source, citation, parameters)."""
    key = _ALIASES.get(name, name)
    if key not in available_networks():
        raise GraphError(f"unknown network {name!r}; shipped networks: {', '.join(available_networks())}")
    return json.loads(resources.files(__name__).joinpath(f"{key}.json").read_text())


def load_network(name: str) -> LinearGaussianNetwork | ArithmeticCircuit:
    """Loads a shipped network by name (no network access, nothing read from outside the package).

    Example:
        >>> net = load_network("ecoli70")
        >>> len(net.graph), len(net.graph.edges)
        (46, 70)
    """
    doc = network_document(name)
    if doc.get("kind") == "discrete":
        return DiscreteNetwork.from_json(doc)
    if doc.get("kind") == "nonlinear":
        return ArithmeticCircuit(graph=from_dict(doc), citation=doc["citation"])
    return LinearGaussianNetwork.from_json(doc)


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


@dataclass(frozen=True, eq=False)
class LinearGaussianNetwork:
    r"""A linear-Gaussian Bayesian network with known parameters.

    Arguments:
        graph: The structure.
        intercept: :math:`b`, shape ``(D,)``, in the graph's topological order.
        weights: :math:`B`, shape ``(D, D)``, ``B[i, j]`` the coefficient of parent ``j`` in ``i``.
        sd: :math:`\sigma`, the conditional standard deviations, shape ``(D,)``.
    """

    graph: BayesianNetwork
    intercept: Tensor
    weights: Tensor
    sd: Tensor
    citation: str = ""
    source: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LinearGaussianNetwork:
        """Builds from the JSON schema with ``intercept``, ``coefficients`` and ``sd`` per node."""
        graph = from_dict(doc)
        D = len(graph)
        b = torch.zeros(D, dtype=torch.float64)
        B = torch.zeros(D, D, dtype=torch.float64)
        sd = torch.zeros(D, dtype=torch.float64)
        for entry in doc["nodes"]:
            v = entry["name"]
            i = graph.index(v)
            try:
                b[i] = float(entry["intercept"])
                sd[i] = float(entry["sd"])
                coefs = [float(c) for c in entry["coefficients"]]
            except (KeyError, TypeError, ValueError) as e:
                raise GraphError(f"network JSON: node {v!r} lacks valid linear-Gaussian parameters") from e
            if len(coefs) != len(entry["parents"]):
                raise GraphError(
                    f"network JSON: node {v!r} has {len(coefs)} coefficients "
                    f"for {len(entry['parents'])} parents"
                )
            if not sd[i] > 0:
                raise GraphError(f"network JSON: node {v!r} has non-positive sd {sd[i].item()}")
            for p, c in zip(entry["parents"], coefs, strict=True):
                B[i, graph.index(p)] = c
        return cls(graph, b, B, sd, doc.get("citation", ""), doc.get("source", ""))

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.graph.nodes

    @cached_property
    def _moments(self) -> tuple[Tensor, Tensor]:
        D = len(self.graph)
        L = torch.linalg.solve_triangular(
            torch.eye(D, dtype=torch.float64) - self.weights,
            torch.eye(D, dtype=torch.float64),
            upper=False,
        )
        mean = L @ self.intercept
        cov = L @ torch.diag(self.sd**2) @ L.T
        return mean, (cov + cov.T) / 2

    def mean_and_covariance(self, variables: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
        """The Gaussian marginal's mean and covariance of ``variables`` (all by default), float64."""
        mean, cov = self._moments
        idx = self._indices(variables)
        return mean[idx], cov[idx][:, idx]

    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> Tensor:
        """Draws ``n`` joint samples by ancestral sampling, shape ``(n, D)`` in topological order."""
        g = _generator(seed, generator)
        D = len(self.graph)
        eps = torch.randn(n, D, generator=g, dtype=torch.float64)
        x = torch.empty(n, D, dtype=torch.float64)
        for i, v in enumerate(self.graph.nodes):
            pa = [self.graph.index(p) for p in self.graph.parents(v)]
            loc = self.intercept[i] + x[:, pa] @ self.weights[i, pa]
            x[:, i] = loc + self.sd[i] * eps[:, i]
        return x.to(dtype)

    def conditional(self, v: str, values: Mapping[str, Tensor]) -> torch.distributions.Normal:
        """The conditional distribution of node ``v`` given its parents' ``values`` (float64)."""
        i = self.graph.index(v)
        loc = self.intercept[i].clone()
        for p in self.graph.parents(v):
            loc = loc + self.weights[i, self.graph.index(p)] * values[p]
        return torch.distributions.Normal(loc, self.sd[i].expand_as(loc))

    def log_prob(self, x: Tensor, variables: Sequence[str] | None = None) -> Tensor:
        """The exact log-density of ``x`` (shape ``(..., len(variables))``) under the Gaussian
        marginal of ``variables`` (all nodes by default).
        """
        mean, cov = self.mean_and_covariance(variables)
        if x.shape[-1] != mean.shape[0]:
            raise ValueError(f"x has {x.shape[-1]} columns but {mean.shape[0]} variables were named")
        mvn = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        return mvn.log_prob(x.to(torch.float64)).to(x.dtype)

    def entropy(self, variables: Sequence[str] | None = None) -> float:
        """The differential entropy (nats) of the marginal of ``variables``."""
        _, cov = self.mean_and_covariance(variables)
        d = cov.shape[0]
        return 0.5 * (d * (1 + math.log(2 * math.pi)) + torch.logdet(cov).item())

    def intervene(self, do: Mapping[str, float]) -> tuple[Tensor, Tensor]:
        r"""The mean and covariance over all nodes of the mutilated network :math:`do(v = a)`: each
        node in ``do`` loses its parents and its noise and takes its value:
        :math:`\mu' = (I - B')^{-1} b'` and
        :math:`\Sigma' = (I - B')^{-1} \mathrm{diag}(\sigma'^2) (I - B')^{-\top}`.

        Example:
            >>> net = load_network("ecoli70")
            >>> mean, cov = net.intervene({"cspG": 1.0})
            >>> mean[net.graph.index("cspG")].item(), cov[net.graph.index("cspG")].abs().max().item()
            (1.0, 0.0)
        """
        L, b, keep = self._mutilated(do)
        cov = L @ torch.diag((self.sd * keep) ** 2) @ L.T
        return L @ b, (cov + cov.T) / 2

    def counterfactual(
        self, x: Tensor, do: Mapping[str, float], observed: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""The counterfactual distribution of every node for rows ``x`` of the ``observed`` nodes
        (all by default) had ``do`` been set: the Gaussian posterior of the noises
        :math:`U = v - Bv - b` given the row (abduction), the mutilated network (action), propagated
        (prediction). Returns the means ``(N, D)`` and the covariance ``(D, D)``, the same for every row.
        """
        O = self._indices(observed)
        x = torch.as_tensor(x, dtype=torch.float64).reshape(-1, len(O))
        mean, _ = self._moments
        L0, S = self._mutilated({})[0], torch.diag(self.sd**2)
        A = L0[O]  # v_O = mean_O + A U
        K = torch.linalg.solve(A @ S @ A.T, A @ S).T  # E[U | v_O] = K (v_O - mean_O)
        mU, CU = (x - mean[O]) @ K.T, S - K @ A @ S
        L, b, keep = self._mutilated(do)
        cov = L @ (keep[:, None] * CU * keep[None, :]) @ L.T
        return b @ L.T + (mU * keep) @ L.T, (cov + cov.T) / 2

    def _mutilated(self, do: Mapping[str, float]) -> tuple[Tensor, Tensor, Tensor]:
        """:math:`(I - B')^{-1}`, :math:`b'` and the mask of the nodes that keep their noise."""
        D = len(self.graph)
        b, B = self.intercept.clone(), self.weights.clone()
        keep = torch.ones(D, dtype=torch.float64)
        for v in self.graph._check_nodes(list(do), "do"):
            i = self.graph.index(v)
            B[i], b[i], keep[i] = 0.0, float(do[v]), 0.0
        eye = torch.eye(D, dtype=torch.float64)
        return torch.linalg.solve_triangular(eye - B, eye, upper=False), b, keep

    def _indices(self, variables: Sequence[str] | None) -> list[int]:
        if variables is None:
            return list(range(len(self.graph)))
        return [self.graph.index(v) for v in self.graph._check_nodes(variables, "variables")]


@dataclass(frozen=True, eq=False)
class ArithmeticCircuit:
    r"""The nonlinear arithmetic-circuit benchmark (Webb et al. 2018; Mouton & Kroon 2022).

    .. math::
        z_0 \sim \mathrm{Laplace}(5, 1), \; z_1 \sim \mathrm{Laplace}(-2, 1),
        z_2 \sim \mathcal{N}(\tanh(z_0 + z_1 - 2.8), 0.1), \; z_3 \sim \mathcal{N}(z_0 z_1, 0.1),
        z_4 \sim \mathcal{N}(7, 2), \; z_5 \sim \mathcal{N}(\tanh(z_3 + z_4), 0.1),
        x_0 \sim \mathcal{N}(z_3, 0.1), \; x_1 \sim \mathcal{N}(z_5, 0.1).
    """

    graph: BayesianNetwork
    citation: str = ""
    observed: tuple[str, ...] = ("x0", "x1")

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.graph.nodes

    def conditional(self, v: str, values: Mapping[str, Tensor]) -> torch.distributions.Distribution:
        """The conditional distribution of node ``v`` given its parents' ``values`` (float64)."""
        return self._conditionals(values)[v]()

    def _conditionals(self, x: Mapping[str, Tensor]) -> dict[str, torch.distributions.Distribution]:
        N, La = torch.distributions.Normal, torch.distributions.Laplace
        one = torch.ones((), dtype=torch.float64)
        return {
            "z0": lambda: La(5.0 * one, one),
            "z1": lambda: La(-2.0 * one, one),
            "z2": lambda: N(torch.tanh(x["z0"] + x["z1"] - 2.8), 0.1),
            "z3": lambda: N(x["z0"] * x["z1"], 0.1),
            "z4": lambda: N(7.0 * one, 2.0),
            "z5": lambda: N(torch.tanh(x["z3"] + x["z4"]), 0.1),
            "x0": lambda: N(x["z3"], 0.1),
            "x1": lambda: N(x["z5"], 0.1),
        }

    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> Tensor:
        """Draws ``n`` ancestral samples, shape ``(n, 8)`` in the graph's topological order."""
        g = _generator(seed, generator)
        values: dict[str, Tensor] = {}
        cond = self._conditionals(values)
        for v in self.graph.nodes:
            dist = cond[v]()
            u = torch.rand(n, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            values[v] = (
                dist.icdf(u)
                if isinstance(dist, torch.distributions.Laplace)
                else (dist.loc + dist.scale * torch.randn(n, generator=g, dtype=torch.float64))
            )
        return torch.stack([values[v] for v in self.graph.nodes], dim=-1).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact joint log-density of all eight variables, ``x`` of shape ``(..., 8)``."""
        values = {v: x[..., i].to(torch.float64) for i, v in enumerate(self.graph.nodes)}
        cond = self._conditionals(values)
        return sum(cond[v]().log_prob(values[v]) for v in self.graph.nodes).to(x.dtype)


def oracle_nll(
    network: LinearGaussianNetwork | ArithmeticCircuit, x: Tensor, observed: Sequence[str]
) -> float | None:
    """The mean negative log-density (nats) of the rows ``x`` of the ``observed`` variables under the
    true ``network``: the best any model of those variables can do on them. ``None`` for a network
    whose marginal density is not known exactly (the nonlinear circuit). A NaN is a missing cell:
    a row's density is then that of its present cells (the Gaussian marginal of each pattern).
    """
    if not isinstance(network, LinearGaussianNetwork | DiscreteNetwork):
        return None
    x = x.double()
    holes = x.isnan()
    if not holes.any():
        return -network.log_prob(x, observed).mean().item()
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    patterns, which = torch.unique(holes, dim=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        rows, present = which == k, (~pattern).nonzero().flatten().tolist()
        names = [observed[j] for j in present]
        total[rows] = network.log_prob(x[rows][:, present], names)
    return -total.mean().item()


#: Importance samples per row of the Monte-Carlo oracle (the arithmetic circuit).
ORACLE_SAMPLES = 4096


@dataclass(frozen=True)
class Oracle:
    """The true network's mean NLL on a set of rows: exact, or a Monte-Carlo estimate.

    Attributes:
        nll: Mean negative log-density (nats per row).
        se: Its Monte-Carlo standard error (``0.0`` when exact).
        method: ``"exact"`` (Gaussian marginal) or ``"monte-carlo"`` (importance sampling).
        samples: Importance samples per row (``0`` when exact).
        seed: The sampler's seed (``None`` when exact).
    """

    nll: float
    se: float = 0.0
    method: str = "exact"
    samples: int = 0
    seed: int | None = None

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def to_dict(self) -> dict:
        return {
            "nll": self.nll,
            "se": self.se,
            "method": self.method,
            "samples": self.samples,
            "seed": self.seed,
        }


def oracle(
    network: LinearGaussianNetwork | ArithmeticCircuit,
    x: Tensor,
    observed: Sequence[str],
    *,
    samples: int = ORACLE_SAMPLES,
    seed: int = 0,
) -> Oracle:
    """The true ``network``'s mean NLL of the rows ``x`` of the ``observed`` variables: exact for a
    linear-Gaussian network, else an importance-sampling estimate with its standard error
    (:func:`importance_log_marginal`, ``samples`` per row, seeded by ``seed``: the same rows give the
    same number).
    """
    if isinstance(network, LinearGaussianNetwork | DiscreteNetwork):
        return Oracle(oracle_nll(network, x, observed))
    circuit = isinstance(network, ArithmeticCircuit) and sorted(observed) == ["x0", "x1"]
    est = importance_log_marginal(
        network, x, observed, samples=samples, seed=seed, proposal="circuit" if circuit else "prior"
    )
    return Oracle(est.nll, est.nll_se, "monte-carlo", samples, seed)

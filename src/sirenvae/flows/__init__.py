r"""Graphical residual flows (GRF) in zuko's lazy style.

Lazy modules own the parameters; ``module(c)`` returns a short-lived transform or distribution:

- :class:`GraphicalResidualFlow` (a stack of :class:`GRFBlock`, ``conditioning="ancestors"`` as in
  the paper or ``"parents"`` for the exact BN factorisation, optionally ending with the
  graph-masked affine step :class:`GraphAffine`) returns a transform with ``__call__``,
  ``call_and_ladj``, ``.inv`` and ``solve``;
- :class:`Flow` (``Flow(transform, base)``) and :class:`GRF` return distributions with
  ``log_prob``, ``sample``, ``rsample`` and ``rsample_and_log_prob``.

References:
    | Graphical Residual Flows (Mouton & Kroon, 2022), ICLR workshop DGM4HSD
"""

from sirenvae.flows.affine import GraphAffine, GraphAffineTransform
from sirenvae.flows.core import (
    ComposedTransform,
    Inverse,
    LazyComposedTransform,
    LazyInverse,
    LazyTransform,
    Transform,
)
from sirenvae.flows.distributions import (
    DiagNormal,
    Flow,
    LazyDistribution,
    NormalizingFlow,
    StandardNormal,
    StandardNormalBase,
)
from sirenvae.flows.grf import CONDITIONING, GRF, GraphicalResidualFlow
from sirenvae.flows.parents import ParentConditionedTransform
from sirenvae.flows.residual import GraphicalResidualTransform, GRFBlock
from sirenvae.flows.root_finding import ConvergenceError, InverseResult, RootFinding

__all__ = [
    "CONDITIONING",
    "GRF",
    "ComposedTransform",
    "ConvergenceError",
    "DiagNormal",
    "Flow",
    "GRFBlock",
    "GraphAffine",
    "GraphAffineTransform",
    "GraphicalResidualFlow",
    "GraphicalResidualTransform",
    "Inverse",
    "InverseResult",
    "LazyComposedTransform",
    "LazyDistribution",
    "LazyInverse",
    "LazyTransform",
    "NormalizingFlow",
    "ParentConditionedTransform",
    "RootFinding",
    "StandardNormal",
    "StandardNormalBase",
    "Transform",
]

"""A registry of flow configurations that feeds every property test."""

from dataclasses import dataclass, field

import torch

from sirenvae.flows import GraphicalResidualFlow


@dataclass(frozen=True)
class FlowCase:
    nodes: int
    edge_prob: float
    context: int = 0
    hidden_layers: int = 2
    blocks: int = 2
    hidden_per_set: int = 3
    activation: str = "lipswish"
    singletons: bool = False
    seed: int = 0
    kwargs: dict = field(default_factory=dict)

    def graph(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = torch.Generator().manual_seed(self.seed)
        A = torch.tril(torch.rand(self.nodes, self.nodes, generator=g) < self.edge_prob, -1)
        # a random relabelling: the flow must not rely on the adjacency being sorted
        perm = torch.randperm(self.nodes, generator=g)
        A = A[perm][:, perm]
        C = None
        if self.context:
            C = torch.rand(self.nodes, self.context, generator=g) < 0.5
        return A, C

    def build(self, dtype=torch.float64, device="cpu") -> GraphicalResidualFlow:
        torch.manual_seed(self.seed)
        A, C = self.graph()
        flow = GraphicalResidualFlow(
            A,
            C,
            blocks=self.blocks,
            hidden_layers=self.hidden_layers,
            hidden_per_set=self.hidden_per_set,
            activation=self.activation,
            singletons=self.singletons,
            **self.kwargs,
        )
        return flow.to(dtype=dtype, device=device)


CASES = {
    "d2-h1": FlowCase(2, 0.9, hidden_layers=1, blocks=1),
    "d5-h2-ctx2": FlowCase(5, 0.5, context=2, seed=1),
    "d12-h3-tanh": FlowCase(12, 0.3, hidden_layers=3, activation="tanh", seed=2),
    "d20-h2-ctx4-singletons": FlowCase(20, 0.2, context=4, singletons=True, seed=3),
    "d30-h1-elu": FlowCase(30, 0.15, hidden_layers=1, activation="elu", blocks=3, seed=4),
    "d40-h2-ctx3": FlowCase(40, 0.1, context=3, hidden_per_set=2, seed=5),
    "d40-h3-dense": FlowCase(40, 0.6, hidden_layers=3, hidden_per_set=1, blocks=1, seed=6),
    # the block-sparse path (automatic for large graphs) through every property test
    "d12-h3-tanh-sparse": FlowCase(
        12, 0.3, hidden_layers=3, activation="tanh", seed=2, kwargs={"layout": "block-sparse"}
    ),
    "d20-h2-ctx4-singletons-sparse": FlowCase(
        20, 0.2, context=4, singletons=True, seed=3, kwargs={"layout": "block-sparse"}
    ),
}

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _transform_cases():
    """Every lazy transform we ship, and its inverse, with the dependence pattern it must respect."""
    from sirenvae.flows import GRFBlock, LazyComposedTransform

    out = {}
    for name, case in CASES.items():
        if case.nodes > 20:
            continue
        out[f"stack-{name}"] = (case, lambda case=case: case.build(), "ancestors")
        out[f"stack-{name}.inv"] = (case, lambda case=case: case.build().inv, "ancestors")
    block = CASES["d5-h2-ctx2"]

    def one_block():
        torch.manual_seed(block.seed)
        return GRFBlock(*block.graph(), hidden_per_set=3).double()

    out["block"] = (block, one_block, "parents")
    out["block.inv"] = (block, lambda: one_block().inv, "ancestors")
    out["identity"] = (CASES["d2-h1"], lambda: LazyComposedTransform(), "parents")
    # the parent-conditioned stack keeps the BN's factorisation at any depth; the affine step alone
    # is a linear-Gaussian BN; the paper's stack may end with the affine step too
    for name, case in PARENT_CASES.items():
        out[name] = (case, lambda case=case: case.build(), "parents")
        out[f"{name}.inv"] = (case, lambda case=case: case.build().inv, "ancestors")
    stacked = FlowCase(6, 0.4, context=2, seed=9, kwargs={"affine": True})
    out["stack-affine"] = (stacked, stacked.build, "ancestors")
    out["stack-affine.inv"] = (stacked, lambda: stacked.build().inv, "ancestors")
    return out


PARENT_CASES = {
    f"parents-T{T}{'-ctx' if ctx else ''}{'-affine' if affine else ''}": FlowCase(
        8,
        0.4,
        context=ctx,
        blocks=T,
        seed=10 + T,
        kwargs={"conditioning": "parents", "affine": affine},
    )
    for T, ctx, affine in [(1, 0, False), (3, 2, False), (5, 0, True), (3, 3, True), (0, 2, True)]
}
PARENT_CASES["parents-T3-ctx-affine-sparse"] = FlowCase(
    8,
    0.4,
    context=3,
    blocks=3,
    seed=13,
    kwargs={"conditioning": "parents", "affine": True, "layout": "block-sparse"},
)


TRANSFORMS = _transform_cases()

"""Defaults shared by several layers, importable without torch (the CLI's help needs them fast)."""

__all__ = [
    "BATCH_SIZE",
    "CONDITIONING",
    "EXACT_LR",
    "EXACT_RESTARTS",
    "KAPPA",
    "LR",
    "MAX_EPOCHS",
    "PATIENCE",
]

#: The default spectral bound of every normalised layer (Behrmann et al. 2019 use 0.97 too).
KAPPA = 0.97

#: How stacked graphical residual blocks condition on the graph: the paper's stacking (each variable
#: ends up depending on all its ancestors) or the parent-conditioned stack (its parents only).
CONDITIONING: tuple[str, ...] = ("ancestors", "parents")

#: The training defaults of every fit (``sirenvae fit``, :func:`sirenvae.fit`, ``FitConfig``), in one
#: place: Adam's learning rate, the mini-batch size, the most epochs and the early-stopping patience.
LR = 3e-3
BATCH_SIZE = 32
MAX_EPOCHS = 2000
PATIENCE = 50

#: The learning rate of a model whose hidden nodes are all summed out (an exact likelihood, trained on
#: every row): on tuning draws of ALARM and CHILD it reached the same held-out NLL as :data:`LR` (within
#: 0.02 nat) in about half the epochs (docs/results.md, "Discrete hidden nodes").
EXACT_LR = 1e-2

#: The final fit of such a model keeps the best of this many restarts by its exact training objective
#: (the search's folds train once): on an own 9-node network with a 3-state hidden node, 2 of 8 seeds
#: settled in a poorer optimum, 0.02 nat worse in training and 0.11 on held-out rows, which the
#: objective told apart every time (docs/results.md, "Learned tables and restarts").
EXACT_RESTARTS = 3

"""Defaults shared by several layers, importable without torch (the CLI's help needs them fast)."""

__all__ = ["CONDITIONING", "KAPPA"]

#: The default spectral bound of every normalised layer (Behrmann et al. 2019 use 0.97 too).
KAPPA = 0.97

#: How stacked graphical residual blocks condition on the graph: the paper's stacking (each variable
#: ends up depending on all its ancestors) or the parent-conditioned stack (its parents only).
CONDITIONING: tuple[str, ...] = ("ancestors", "parents")

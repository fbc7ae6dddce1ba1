"""Defaults shared by several layers, importable without torch (the CLI's help needs them fast)."""

__all__ = ["KAPPA"]

#: The default spectral bound of every normalised layer (Behrmann et al. 2019 use 0.97 too).
KAPPA = 0.97

"""sirenvae: deep generative models that follow a known Bayesian network."""

__version__ = "0.1.0"

"""sirenvae: deep generative models that follow a known Bayesian network.

``sirenvae.load(run_dir)``, ``sirenvae.fit(graph, df, ...)`` and ``sirenvae.compare(graph, df, ...)``
(see :mod:`sirenvae.api`) are imported on first use, so that ``import sirenvae`` stays light.
"""

from sirenvae.version import __version__

__all__ = ["FittedModel", "__version__", "compare", "fit", "load"]


def __getattr__(name: str):
    if name in ("FittedModel", "compare", "fit", "load"):
        from sirenvae import api

        return getattr(api, name)
    raise AttributeError(f"module 'sirenvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

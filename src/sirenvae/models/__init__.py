r"""SIReN-VAE and its baselines as configurations of one model class.

The prior is a normalizing graphical residual flow over the latents (conditioned on their observed
parents), the decoder a Gaussian (or Student-t) whose mean and scale come from an MLP masked by the
BN (optionally plus a graph-masked affine term), and the encoder :math:`q_\phi(z \mid x)` the flow of
an inverse graphical residual flow masked by the faithful inverse of the BN. Each piece is a lazy
distribution; :func:`build_model` assembles them by variant.

References:
    | SIReN-VAE: Leveraging Flows and Amortized Inference for Bayesian Networks (Mouton & Kroon, 2022)
    | https://arxiv.org/abs/2204.11847
"""

import importlib

from sirenvae.models.config import VARIANTS, ModelConfig

# the configuration is torch-free (the CLI reads it at start-up); the modules are imported on use
_LAZY = {
    "build_model": "build",
    "variant_graph": "build",
    "DiagonalEncoder": "components",
    "Decoder": "components",
    "maf_encoder": "components",
    "SIReNVAE": "vae",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"sirenvae.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "VARIANTS",
    "Decoder",
    "DiagonalEncoder",
    "ModelConfig",
    "SIReNVAE",
    "build_model",
    "maf_encoder",
    "variant_graph",
]

r"""SIReN-VAE and its baselines as configurations of one model class.

The prior is a normalizing graphical residual flow over the latents (conditioned on their observed
parents), the decoder a Gaussian whose mean and scale come from an MLP masked by the BN, and the
encoder :math:`q_\phi(z \mid x)` the flow of an inverse graphical residual flow masked by the
faithful inverse of the BN. Each piece is a lazy distribution; :func:`build_model` assembles them
by variant.

References:
    | SIReN-VAE: Leveraging Flows and Amortized Inference for Bayesian Networks (Mouton & Kroon, 2022)
    | https://arxiv.org/abs/2204.11847
"""

from sirenvae.models.build import build_model, variant_graph
from sirenvae.models.components import DiagonalEncoder, GaussianDecoder, maf_encoder
from sirenvae.models.config import VARIANTS, ModelConfig
from sirenvae.models.vae import SIReNVAE

__all__ = [
    "VARIANTS",
    "DiagonalEncoder",
    "GaussianDecoder",
    "ModelConfig",
    "SIReNVAE",
    "build_model",
    "maf_encoder",
    "variant_graph",
]

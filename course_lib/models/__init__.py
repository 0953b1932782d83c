"""Models of the course: one idea per file. The leaf of the package: these modules import only torch
and each other, never the rest of course_lib (a contract in pyproject.toml checks it)."""

from course_lib.models.autoencoder import Autoencoder, conv_autoencoder, mlp_autoencoder
from course_lib.models.blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, check_images
from course_lib.models.cvae import CVAE, conditioning, conv_cvae, mlp_cvae, text_cvae
from course_lib.models.two_stage import TextToLatent, TwoStageVAE, image_vae, report000_vae
from course_lib.models.vae import VAE, VAEOutput, conv_vae, mlp_vae

__all__ = [
    "CVAE",
    "VAE",
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "TextToLatent",
    "TwoStageVAE",
    "VAEOutput",
    "check_images",
    "conditioning",
    "conv_autoencoder",
    "conv_cvae",
    "conv_vae",
    "image_vae",
    "mlp_autoencoder",
    "mlp_cvae",
    "mlp_vae",
    "report000_vae",
    "text_cvae",
]

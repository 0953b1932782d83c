"""Models of the course: one idea per file."""
from course_lib.models.autoencoder import Autoencoder, conv_autoencoder, mlp_autoencoder
from course_lib.models.blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, check_images
from course_lib.models.cvae import CVAE, ClassGaussians, conditioning, conv_cvae, mlp_cvae
from course_lib.models.two_stage import (LatentRegression, TextToLatent, TwoStageVAE, image_vae, seed000_elbo)
from course_lib.models.vae import VAE, VAEOutput, conv_vae, mlp_vae

__all__ = ["CVAE", "VAE", "ClassGaussians", "Autoencoder", "ConvDecoder", "ConvEncoder", "LatentRegression",
           "MLPDecoder", "MLPEncoder", "TextToLatent", "TwoStageVAE", "VAEOutput", "check_images", "conditioning",
           "conv_autoencoder", "conv_cvae", "conv_vae", "image_vae", "mlp_autoencoder", "mlp_cvae", "mlp_vae",
           "seed000_elbo"]

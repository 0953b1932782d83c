"""Models of the course: one idea per file."""
from course_lib.models.autoencoder import Autoencoder, conv_autoencoder, mlp_autoencoder
from course_lib.models.blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, check_images
from course_lib.models.vae import VAE, VAEOutput, conv_vae, mlp_vae

__all__ = ["Autoencoder", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "VAE", "VAEOutput",
           "check_images", "conv_autoencoder", "conv_vae", "mlp_autoencoder", "mlp_vae"]

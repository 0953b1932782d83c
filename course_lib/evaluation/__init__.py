"""Measuring what the models learned: metrics (MSE, SSIM, FID/KID, CLIP score, conditional accuracy),
latent analysis (PCA, t-SNE, SOM, kNN, silhouette) and the two judges trained once and cached
(the Fashion-MNIST ``classifier`` and the scenes' ``scene_reader``).

Layer rule: imports text, data, core and models; never recipes or instructor.
"""

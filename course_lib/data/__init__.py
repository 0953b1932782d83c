"""Data sets: Fashion-MNIST, MNIST and CIFAR-10 as tensors (``images``), COCO captions and instances
through pycocotools (``coco``), the synthetic scenes in COCO's format (``scenes``), resumable checked
downloads (``download``) and caption-image pairs (``captions``).

Layer rule: imports course_lib.core and course_lib.models only.
"""

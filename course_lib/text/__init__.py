"""Text: BERT and CLIP encoders with the embedding cache (``encoders``), frozen token features on disk
(``tokens``) and short text to a class (``to_class``).

Layer rule: imports course_lib.data, course_lib.core and course_lib.models only.
"""

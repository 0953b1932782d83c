"""Instructor tools, not needed by students: execute the chapters and stage the book (``execute``),
student versions and grading (``student``, ``grade``), the repository address (``repository``),
throughput benchmarks (``bench``) and the one-run check of the CUDA paths (``gpu_check``, ``make
gpu-check``). Run as ``python -m course_lib.instructor.<tool>``.

Layer rule: the top layer; it may import anything in course_lib, and nothing in course_lib imports it.
"""

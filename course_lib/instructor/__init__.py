"""Instructor tools, not needed by students: execute the chapters and stage the book (``execute``),
student versions and grading (``student``, ``grade``), the repository address (``repository``) and
throughput benchmarks (``bench``). Run as ``python -m course_lib.instructor.<tool>``.

Layer rule: the top layer; it may import anything in course_lib, and nothing in course_lib imports it.
"""

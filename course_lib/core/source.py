"""Show library source inside a notebook, so model code lives in one place (chapter 01).

Imports only the standard library (and IPython where it is installed): no other part of course_lib.
"""

from __future__ import annotations

import inspect
from typing import Any


def show_source(obj: Any) -> Any:
    """Display the source of a course_lib function or class with syntax highlighting (chapter 01).

    Returns an ``IPython.display.Code`` object (rendered by Jupyter and Jupyter Book); outside IPython
    it returns the plain source text.
    """
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code
    except ImportError:
        return source
    return Code(source, language="python")

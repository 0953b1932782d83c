"""course_lib: the shared code of the course "Latent spaces, from autoencoders to text-to-image VAEs".

Every function here is taught in a chapter; its docstring names the chapter that introduces it.

This file imports course_lib.core only (the device, the run profiles and show_source).
"""

from course_lib.core.device import choose_device, seed_everything
from course_lib.core.profiles import Profile, get_profile
from course_lib.core.source import show_source

__version__ = "0.1.0"
__all__ = ["Profile", "choose_device", "get_profile", "seed_everything", "show_source"]

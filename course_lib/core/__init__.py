"""The core of course_lib: run profiles, the device, where files go and how they are written, the
losses, the training loop with its callbacks, and samplers of trained models.

Layer rule: imports only torch (and numpy, pandas, tqdm, torchvision, scikit-learn, IPython) and
course_lib.models; never data, text, evaluation, plotting, recipes or instructor (a contract in
pyproject.toml checks it).
"""

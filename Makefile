# Two commands do all set-up: `make book` and `make test` (see README.md).
PROFILE ?= auto
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CHAPTERS := $(sort $(wildcard chapters/[0-9][0-9]_*.ipynb))

.PHONY: book test install data classifier bench student clean

# Re-installs when pyproject.toml changes; creates the virtual environment if it is missing.
$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

data: install
	$(PYTHON) data_scripts/get_fashion_mnist.py

# The Fashion-MNIST classifier behind chapter 04's FID/KID and conditional accuracy (trained once, cached).
classifier: data
	$(PYTHON) data_scripts/train_classifier.py --profile $(PROFILE)

book: data classifier
	rm -rf _build/executed
	$(PYTHON) -m course_lib.execute --profile $(PROFILE) --out _build/executed $(CHAPTERS)
	$(VENV)/bin/jupyter-book build _build/executed --path-output . --warningiserror --nitpick --keep-going
	@echo "Book written to _build/html/index.html (execution times: _build/executed/execution_report.csv)"

test: data
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) -m course_lib.bench

# Student versions of the chapters: every exercise, or one assignment's (make student ASSIGNMENT=A2).
student: install
	$(PYTHON) -m course_lib.student $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

clean:
	rm -rf _build

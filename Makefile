# Two commands do all set-up: `make book` and `make test` (see README.md).
PROFILE ?= auto
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ALL_CHAPTERS := $(sort $(wildcard chapters/[0-9][0-9]_*.ipynb))
# Chapters for `make book-check`, by number or path: make book-check CHAPTERS="07 08"
CHAPTERS ?=
STRICT_BUILD := build --warningiserror --nitpick --keep-going

.PHONY: book book-check dry-run chapters-named lint test install data classifier bench gpu-check student clean

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
	$(PYTHON) -m course_lib.instructor.execute --profile $(PROFILE) --out _build/executed $(ALL_CHAPTERS)
	$(VENV)/bin/jupyter-book $(STRICT_BUILD) _build/executed --path-output .
	@echo "Book written to _build/html/index.html (execution times: _build/executed/execution_report.csv)"

# Check chapters on the path the book's users take: the cpu profile, every model trained from scratch
# (an empty checkpoint folder; data and judges stay cached), then the book's strict render, with the
# other chapters staged unexecuted. PROFILE=smoke on the command line gives a quick version.
book-check: PROFILE = cpu
book-check: chapters-named data classifier
	rm -rf _build/check _build/check-checkpoints
	$(PYTHON) -m course_lib.instructor.execute --profile $(PROFILE) --out _build/check \
		--checkpoints _build/check-checkpoints --stage-unexecuted $(CHAPTERS)
	$(VENV)/bin/jupyter-book $(STRICT_BUILD) _build/check --path-output _build/check
	@echo "Checked $(CHAPTERS): _build/check/_build/html/index.html (times: _build/check/execution_report.csv)"

# Every chapter with the gpu profile's sizes and code paths, 2 steps per epoch, on any machine (instructor page).
dry-run: data
	$(PYTHON) -m course_lib.instructor.execute --profile $(or $(filter-out auto,$(PROFILE)),gpu) --dry-run 2 \
		--out _build/dry-run $(ALL_CHAPTERS)

chapters-named:
	@test -n "$(CHAPTERS)" || { echo 'Name the chapters to check, e.g. make book-check CHAPTERS="07 08"'; exit 2; }

# The checks pre-commit runs (.pre-commit-config.yaml), over every file: ruff (lint and format),
# notebooks committed without outputs, and the layer contracts of course_lib (pyproject.toml).
LINTED := course_lib tests data_scripts chapters
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/nbstripout --keep-id --verify chapters/*.ipynb
	$(VENV)/bin/lint-imports

test: data lint
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) -m course_lib.instructor.bench

# The CUDA paths in one run (benchmark, chapter 02 at the gpu profile's sizes, resume, bf16 and fp16 AMP),
# on a bare GPU machine: no install, the Python there (torch, torchvision, torchmetrics, transformers,
# pandas, matplotlib), course_lib from this tree, Fashion-MNIST's four IDX files in FASHION_MNIST.
FASHION_MNIST ?= $(HOME)/.cache/course_lib/torchvision/FashionMNIST/raw
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m course_lib.instructor.gpu_check --fashion-mnist $(FASHION_MNIST)

# Student versions of the chapters: every exercise, or one assignment's (make student ASSIGNMENT=A2).
student: install
	$(PYTHON) -m course_lib.instructor.student $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

clean:
	rm -rf _build

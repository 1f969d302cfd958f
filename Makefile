# The two commands a newcomer needs: `make lab` and `make test` (see README.md). `make help` lists the rest.
# Python 3.11 to 3.13: the first of python3.11, python3.12, python3.13, python3 that is one (or PYTHON=...).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' \
	2>/dev/null && { command -v $$p; break; }; done)
# PyTorch build: auto (CUDA where nvidia-smi sees an NVIDIA GPU, else CPU), cpu or cuda: make setup TORCH=cpu
TORCH ?= auto
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
SETUP := bash scripts/setup_env.sh "$(PYTHON)" "$(VENV)" "$(TORCH)" "$(origin PYTHON)"
# Tests and the notebook kernels import course_lib from this checkout, whatever the venv.
export PYTHONPATH := $(CURDIR)

.PHONY: help setup lab lab-instructor test test-fast lint book book-check bench clean clean-venv assignments grade leaderboard holdout reference

# Checks the interpreter, (re)builds .venv when needed, installs the chosen PyTorch build and the course.
setup:
	@$(SETUP)

$(STAMP): pyproject.toml scripts/jupyterlab-overrides.json scripts/setup_env.sh
	@$(SETUP)

# Extra JupyterLab options, e.g. make lab LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=

# Learners: your own copies in workspace/ (answers replaced by stubs; built if missing, never overwritten).
# Only the course kernel is offered there, so the launcher shows one Python.
lab: $(STAMP)
	$(PY) scripts/build_notebooks.py --workspace workspace
	$(VENV)/bin/jupyter lab --notebook-dir=workspace --KernelSpecManager.allowed_kernelspecs=dlfts \
		--MappingKernelManager.default_kernel_name=dlfts $(LAB_ARGS)

# Instructors and contributors: the sources, with solutions (notebooks/, assignments/ masters).
lab-instructor: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. $(LAB_ARGS)

LINTED := course_lib tests notebooks scripts benchmarks assignments grader book
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# Two workers; loadscope keeps each test file and each notebook on one worker, in order. The notebook
# times are printed whatever pytest's verdict, and make exits with pytest's status.
TEST_JOBS ?= 2
test: lint
	$(PY) scripts/build_notebooks.py --out build/nbtest
	status=0; $(PY) -m pytest -q tests build/nbtest --nbval-lax --nbval-current-env -n $(TEST_JOBS) --dist loadscope \
		--junitxml=build/junit.xml -o junit_family=xunit1 || status=$$?; \
	$(PY) scripts/notebook_times.py build/junit.xml; exit $$status

# The fast inner loop while editing course_lib: unit tests only (no notebooks, no grading sandboxes,
# no GPU), on two workers, in about two minutes. Narrow further with PYTEST_ARGS="-k mamba".
PYTEST_ARGS ?=
test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not sandbox and not gpu" -n $(TEST_JOBS) --dist loadscope $(PYTEST_ARGS)

# The course as a website in build/site/ (Sphinx, MyST-NB, the book theme; offline: bundled MathJax, the
# packaged data). Chapters run once and are cached in build/book-cache/: a rebuild re-runs only a chapter
# whose code changed (rm -r build/book-cache to run them all again, e.g. after a change to course_lib).
# Any warning fails the build (stderr in a chapter's output is one); scripts/check_book.py then reads every
# page for tracebacks, warnings, stderr, machine paths, figures without alt text and broken links.
BOOK_EXECUTE ?= cache
book: $(STAMP)
	COURSE_OFFLINE=1 BOOK_EXECUTE=$(BOOK_EXECUTE) $(PY) -m sphinx -b html -W --keep-going -q \
		-d build/book-doctrees book build/site
	$(PY) scripts/check_book.py build/site
	@echo "The course's website is in build/site/ (open build/site/index.html; any static host serves it)"

# A real browser on the built site: headless Chromium (the distribution's package: apt-get install
# chromium) driven by Playwright opens the landing page, follows the sidebar to every chapter, searches,
# and saves screenshots in build/site-check/.
book-check: $(STAMP)
	@test -f build/site/index.html || { echo "no build/site/index.html: run 'make book' first"; exit 2; }
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e ".[browser]"
	$(PY) -m pytest -q -m browser tests/test_book_browser.py

bench: $(STAMP)
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/ssm_scan.py
	$(PY) benchmarks/serving_latency.py

# The capstone leaderboard (chapter 08): every family, 5 seeds, frozen and walk-forward, into
# docs/leaderboard.md, .csv, .png and the forecasts per seed (leaderboard_predictions.npz), from which
# `python scripts/leaderboard.py --from-predictions docs` re-derives it in seconds (budget: 60 minutes).
leaderboard: $(STAMP)
	$(PY) scripts/leaderboard.py --walk-forward

# The sealed cross-asset hold-out of the capstone: the board's recipes (MSE, 3 seeds) re-fitted on ^IXIC,
# AAPL, MSFT and IBM, scored once, into docs/holdout.md (needs docs/leaderboard.csv; budget: 60 minutes).
holdout: $(STAMP)
	$(PY) scripts/holdout.py

# Full-budget reference results of chapters 01-04, 06a, 06c and 06e (5 seeds, epochs to early
# stopping) into docs/reference/, which the chapters print beside their own budget's rows (budget: 30
# minutes per chapter on a 2-core CPU). One chapter: make reference CHAPTER=06c
CHAPTER ?=
reference: $(STAMP)
	$(PY) scripts/reference_runs.py $(if $(CHAPTER),--chapter $(CHAPTER),--all)

# Graded exercises (docs/instructors.md): student versions and autograder bundles into dist/,
# checked: every solution scores full marks and every unmodified student version zero; and the learner
# copies of the chapters into dist/chapters/ (the course's build script; no solution line may be left).
assignments: $(STAMP)
	$(PY) -m grader build --verify
	$(PY) scripts/build_notebooks.py --learner dist

# make grade SUBMISSIONS=folder [ASSIGNMENT=00] [GRADES=folder] [TIMEOUT=60] [JOBS=1] [UNSANDBOXED=1]
# writes GRADES/gradebook.csv and GRADES/feedback/<student>.md (GRADES defaults to <SUBMISSIONS>-graded).
# Each submission runs in a bubblewrap sandbox (apt-get install bubblewrap); without it the grader
# refuses, unless UNSANDBOXED=1 (unsafe: submissions then run as you; every line of output says so).
TIMEOUT ?= 60
JOBS ?= 1
UNSANDBOXED ?=
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [ASSIGNMENT=00] [GRADES=folder] [TIMEOUT=60] [JOBS=1] [UNSANDBOXED=1]"; exit 2; }
	$(PY) -m grader grade "$(SUBMISSIONS)" --timeout $(TIMEOUT) --jobs $(JOBS)$(if $(ASSIGNMENT), --assignment "$(ASSIGNMENT)")$(if $(GRADES), --grades "$(GRADES)")$(if $(UNSANDBOXED), --unsandboxed)

# Removes what builds write (build/, dist/); keeps .venv and your workspace/.
clean:
	rm -rf build dist
	@echo "kept $(VENV) and workspace/ (your work); 'make clean-venv' removes the environment"

# Removes the environment (the next make rebuilds it), e.g. after installing another Python.
clean-venv:
	rm -rf $(VENV)

help:
	@echo "make lab             your copies of the chapters and exercises in JupyterLab (sets up on first use)"
	@echo "make test            lint, unit tests and every notebook under nbval"
	@echo "make test-fast       unit tests only (-m 'not slow and not sandbox and not gpu'): the inner loop"
	@echo "make setup           (re)install the environment; TORCH=auto|cpu|cuda, PYTHON=/path/to/python3.12"
	@echo "make lab-instructor  the sources, with solutions"
	@echo "make book            the course as a website in build/site/ (chapters run once, then cached)"
	@echo "make book-check      headless Chromium on build/site/: every chapter, search, screenshots"
	@echo "make bench           the Trainer's overhead against a bare training loop"
	@echo "make leaderboard     the capstone's full table (every family, 5 seeds) into docs/leaderboard.md"
	@echo "make holdout         the capstone recipes re-fitted on ^IXIC, AAPL, MSFT, IBM into docs/holdout.md"
	@echo "make reference       full-budget results of chapters 01-04, 06a, 06c, 06e into docs/reference/ (CHAPTER=03)"
	@echo "make assignments     student versions and autograder bundles in dist/ (checked)"
	@echo "make grade SUBMISSIONS=folder   grade a folder of submitted notebooks"
	@echo "make clean           remove build/ and dist/;  make clean-venv: remove .venv"

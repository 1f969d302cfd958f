# The two commands a newcomer needs: `make lab` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# Tests and the notebook kernels import course_lib from this checkout, whatever the venv.
export PYTHONPATH := $(CURDIR)

.PHONY: setup lab lab-instructor test lint book bench clean assignments grade

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/jupyterlab-overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	$(PY) -m ipykernel install --sys-prefix --name dlfts --display-name "Python (DL for financial time series)"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp scripts/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# Extra JupyterLab options, e.g. make lab LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=

# Learners: your own copies in workspace/ (answers replaced by stubs; built if missing, never overwritten).
lab: $(STAMP)
	$(PY) -m grader workspace workspace
	$(VENV)/bin/jupyter lab --notebook-dir=workspace $(LAB_ARGS)

# Instructors and contributors: the sources, with solutions (notebooks/, assignments/ masters).
lab-instructor: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. $(LAB_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check course_lib tests notebooks scripts benchmarks assignments

test: lint
	$(PY) scripts/build_notebooks.py --out build/nbtest
	$(PY) -m pytest -q tests build/nbtest --nbval-lax --nbval-current-env \
		--junitxml=build/junit.xml -o junit_family=xunit1
	$(PY) scripts/notebook_times.py build/junit.xml

book: $(STAMP)
	$(PY) scripts/build_notebooks.py --out build/book
	$(VENV)/bin/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
		--output-dir build/book build/book/*.ipynb
	@echo "The rendered course is in build/book/*.html"

bench: $(STAMP)
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/ssm_scan.py

# Graded exercises (docs/instructors.md): student versions and autograder bundles into dist/,
# checked: every solution scores full marks and every unmodified student version zero.
assignments: $(STAMP)
	$(PY) -m grader build --verify

# make grade SUBMISSIONS=folder [ASSIGNMENT=00] [GRADES=folder] [TIMEOUT=60] [JOBS=1]
# writes GRADES/gradebook.csv and GRADES/feedback/<student>.md (GRADES defaults to <SUBMISSIONS>-graded).
TIMEOUT ?= 60
JOBS ?= 1
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [ASSIGNMENT=00] [GRADES=folder] [TIMEOUT=60] [JOBS=1]"; exit 2; }
	$(PY) -m grader grade "$(SUBMISSIONS)" --timeout $(TIMEOUT) --jobs $(JOBS)$(if $(ASSIGNMENT), --assignment "$(ASSIGNMENT)")$(if $(GRADES), --grades "$(GRADES)")

clean:
	rm -rf build dist

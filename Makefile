# The two commands a newcomer needs: `make lab` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
# Tests and the notebook kernels import course_lib from this checkout, whatever the venv.
export PYTHONPATH := $(CURDIR)

.PHONY: setup lab test lint book bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/jupyterlab-overrides.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	$(PY) -m ipykernel install --sys-prefix --name dlfts --display-name "Python (DL for financial time series)"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp scripts/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check course_lib tests notebooks scripts benchmarks

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

clean:
	rm -rf build dist

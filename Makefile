# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv on first use and install the pinned versions from requirements.lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint lock

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/surgecast demo --out demo-out

# One test worker per core, at most four: each starts its own Prometheus and PostgreSQL.
test: $(STAMP)
	bash scripts/test-services.sh postgresql prometheus chromium chromium-driver
	$(PY) -m pytest -n auto --maxprocesses 4

lint: $(STAMP)
	$(VENV)/bin/ruff check forecaster controller tests benchmarks
	$(VENV)/bin/mypy

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^surgecast' > requirements.lock

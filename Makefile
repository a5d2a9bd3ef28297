# Quick start: `make run` (install + a short default run), `make test` (install + the whole test suite).
# Both create or refresh the virtual environment in $(VENV) first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aegir-installed
# Extra Hydra overrides for `make run`, e.g. `make run ARGS="trainer.max_steps=100"`.
ARGS ?=
# Extra pytest arguments for `make test` / `make test-fast`, e.g. `make test PYTEST_ARGS="-k rwkv7"`.
PYTEST_ARGS ?=

.PHONY: install run test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install_torch.sh
	test -x $(PY) || python3 -m venv $(VENV)
	scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: install
	$(PY) run.py $(ARGS)

# The whole suite (what CI runs).
test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Everything but the tests marked slow (CLI subprocesses, Hugging Face runs, multiruns): under 2 minutes on 2 cores.
test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Every benchmark (aegir/bench_suite.py): bench.md and bench.json in the working directory. Quiet machine only.
bench: install
	$(PY) -m aegir.bench_suite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

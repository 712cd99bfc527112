# streamdrift: `make demo` to see it work, `make test` to check it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py src/streamdrift/core/_speedups.c | cksum | cut -d' ' -f1)

.PHONY: install demo test lint bench mutation chaos broker-start broker-stop clean

$(STAMP): pyproject.toml setup.py src/streamdrift/core/_speedups.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "streamdrift needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

# ruff (lint and format), the layers (import-linter: cli -> runtime -> core), mypy
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# lint, then unit tests, the real broker (integration) and Prometheus/compose (e2e), and the doctests, in
# PYTEST_JOBS processes (pytest-xdist; they share one broker, see tests/conftest.py); PYTEST_JOBS=0: one process.
# worksteal: an idle process takes tests queued for a busy one, so a long integration test does not hold up the end.
PYTEST_JOBS ?= 2
test: lint
	scripts/ensure-prometheus
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist worksteal --durations=15

# The README's table (about 5 minutes); BENCH_ARGS="--events 200000" for a shorter run,
# see benchmarks/bench.py --help
BENCH_ARGS ?= --memory --repeat 3
bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# Mutation testing (not part of `make test`): scripts/mutation.py runs mutmut once per module of
# MUTATION_MODULES, each with its own fast tests, niced, one mutant at a time, then the kill rate per module and
# the survivors. docs/mutation.md says how to read it and lists the survivors left with the reason.
MUTATION_MODULES ?= policy state stats
mutation: install
	$(BIN)/python scripts/mutation.py $(MUTATION_MODULES)

# Fault injection (not part of `make test`, about 5 minutes): SIGKILLs, a 60 s broker outage, a full snapshot
# disk and poison events against a running worker on a broker of its own, then one table; exits non-zero when a
# guarantee fails. CHAOS_ARGS="--seed 5 --kills 5" for another schedule; docs/reliability.md says how to read it.
CHAOS_ARGS ?=
chaos: install
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

broker-start:
	scripts/kafka start

broker-stop:
	scripts/kafka stop

clean:
	-scripts/kafka stop
	rm -rf $(VENV) .cache .streamdrift

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

# Mutation testing (not part of `make test`): mutmut over the modules and tests of [tool.mutmut] in
# pyproject.toml, niced, then the count per module and the survivors. docs/mutation.md says how to read it.
mutation: install
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results --all true | sed 's/^ *//' | awk -F': ' \
	  '{ split($$1, n, "."); m = n[1] "." n[2] "." n[3]; total[m]++; if ($$2 == "killed") k[m]++ } \
	   END { for (m in total) printf "%-28s %4d / %4d killed (%.1f %%)\n", m, k[m], total[m], 100 * k[m] / total[m] }'
	$(BIN)/mutmut results

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

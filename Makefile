# streamdrift: `make demo` to see it work, `make test` to check it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py src/streamdrift/_speedups.c | cksum | cut -d' ' -f1)

.PHONY: install demo test bench broker-start broker-stop clean

$(STAMP): pyproject.toml setup.py src/streamdrift/_speedups.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "streamdrift needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

test: install
	scripts/ensure-prometheus
	$(BIN)/python -m pytest

# The README's table (about 5 minutes); BENCH_ARGS="--events 200000" for a shorter run,
# see scripts/bench.py --help
BENCH_ARGS ?= --memory --repeat 3
bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

broker-start:
	scripts/kafka start

broker-stop:
	scripts/kafka stop

clean:
	-scripts/kafka stop
	rm -rf $(VENV) .cache .streamdrift

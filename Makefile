# `make test` and `make demo` set everything up themselves: a .venv with the exact versions of
# constraints.txt. The install step reruns only when setup.cfg, pyproject.toml or
# constraints.txt change, so a second run installs nothing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.zoo-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: all install test demo lint bench capabilities clean

all: test

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt pip
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# One test worker per core (pytest-xdist): most tests wait on the zoo processes they start.
# Tests marked with one xdist_group run in one worker (zoo serve's: one server for them all).
# JOBS=0 runs them in this process (pytest's own -n 0), for debugging.
JOBS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

DEMO_RUN ?= runs/demo-lenet

demo: $(STAMP)
	$(BIN)/zoo list
	@echo
	rm -rf $(DEMO_RUN) $(DEMO_RUN)-export
	$(BIN)/zoo train lenet --data mnist5k --out $(DEMO_RUN)
	@echo
	$(BIN)/zoo export lenet --checkpoint $(DEMO_RUN) --out $(DEMO_RUN)-export
	@echo
	$(BIN)/zoo bench lenet --artifacts $(DEMO_RUN)-export --device cpu --json $(DEMO_RUN)-bench.json

# ruff (style), mypy (types), import-linter (the layers of README: Architecture; no cycles).
LINT_STAMP := $(VENV)/.zoo-lint-installed
$(LINT_STAMP): $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(BIN)/ruff check zoo tests benchmarks examples
	$(BIN)/ruff format --check zoo tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest-benchmark: start-up, trainer speed and latency per (model, runtime, batch), and the
# performance targets measured with zoo bench; narrow it with ZOO_BENCH_MODELS /
# ZOO_BENCH_RUNTIMES / ZOO_BENCH_BATCHES / ZOO_TARGET_GROUPS (comma-separated), or pick
# files with BENCH=benchmarks/test_targets.py. pytest-benchmark's JSON: .benchmarks/latest.json
BENCH ?= benchmarks
bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest $(BENCH) --benchmark-json=.benchmarks/latest.json $(PYTEST_ARGS)

# Export every built-in model to every format (AOTInductor included: ~15 min here) and record
# the outcomes in zoo/plugins/capabilities.json, which `zoo list` shows. MODELS narrows it.
MODELS ?=
capabilities: $(STAMP)
	$(BIN)/python -m zoo.export.matrix --write $(MODELS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks

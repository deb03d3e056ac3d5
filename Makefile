# The README's two commands: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install tools run test lint dashboards models bench reproduce clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,experiments]"
	touch $@

install: $(VENV)/.installed

# Prometheus and promtool for the observability tests, Chromium and its driver for the
# playground's browser test, PostgreSQL's server for the database tests (Debian's packages; root
# or sudo). The server's binaries are looked for, not psql: the client alone starts no server.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_TOOLS := prometheus chromium chromium-driver postgresql
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && \
	  command -v chromium >/dev/null && command -v chromedriver >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get install -y -q --no-install-recommends $(APT_TOOLS) || \
	    ( $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(APT_TOOLS) ) )

run: install
	$(BIN)/dgs serve --host $(HOST) --port $(PORT)

# --durations=15: the slowest tests and fixture setups in CI's output, so the suite's cost
# stays visible (it once grew from 2 to 27 minutes unnoticed)
test: install tools
	$(BIN)/ruff check service tests deploy experiments
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --durations=15

lint: install
	$(BIN)/ruff check service tests deploy experiments
	$(BIN)/ruff format --check service tests deploy experiments
	$(BIN)/lint-imports
	$(BIN)/python deploy/grafana/build_dashboards.py --check

# Rebuild deploy/grafana/dashboards/*.json from deploy/grafana/build_dashboards.py.
dashboards: install
	$(BIN)/python deploy/grafana/build_dashboards.py

# Retrain every shipped model: the paper recipe's plain and density models (about 1.5 minutes
# each on 2 CPU cores), the improved recipe's plain models (about 5 minutes each) and its
# energy models (about 11 minutes each: a double backward per step), and the labelled datasets'
# class-conditional models (about 5-7 minutes each, one thread) with their autoguidance guides
# (about 20 seconds each), then the improved plain models' tuned spacings (about 15-30 minutes
# each on one core: a search over their few-step timesteps).
models: install
	$(BIN)/dgs train --dataset all --objective plain --quiet --out model_store
	$(BIN)/dgs train --dataset all --objective density --quiet --out model_store
	$(BIN)/dgs train --dataset all --objective plain --recipe improved --quiet --out model_store
	$(BIN)/dgs train --dataset all --objective energy --recipe improved --quiet --out model_store
	$(BIN)/dgs train --dataset all --objective conditional --recipe improved --quiet --out model_store
	$(BIN)/dgs train --dataset all --objective conditional --recipe guide --quiet --out model_store
	$(BIN)/dgs oracles --out model_store
	$(BIN)/dgs tune-spacing --model-store model_store --model circle-plain-improved \
	  dino-plain-improved line-plain-improved moons-plain-improved

# Speed benchmarks (about 30 minutes on 2 CPU cores, the refactor section about 10 of them): .bench/bench.json and .bench/bench.md
bench: install
	$(BIN)/dgs bench --out .bench

# The paper's Table 1 grid and figures into results/ (about 6 minutes on 2 CPU cores)
reproduce: install
	$(BIN)/dgs reproduce --out results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtual environment (.venv) it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench soak fuzz venv clean lab-deps browser-deps node-deps jupyter proto

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The NAT lab's system packages (iproute2, nftables, conntrack), installed when root.
lab-deps:
	@sh scripts/lab-deps.sh

# Debian's Chromium for the browser check of the notebook widgets, installed when root.
browser-deps:
	@sh scripts/browser-deps.sh

# Node.js and npm for the js-libp2p interop tests, installed when root and missing.
node-deps:
	@sh scripts/node-deps.sh

demo: $(STAMP) lab-deps
	$(BIN)/ucsdk demo

# JupyterLab on 127.0.0.1 with the example notebooks (root may be needed for notebook 03).
jupyter: $(STAMP)
	$(BIN)/jupyter lab notebooks --ip=127.0.0.1 --no-browser

lint: $(STAMP)
	$(BIN)/ruff check ucsdk tests bench docs/examples
	$(BIN)/ruff format --check ucsdk tests bench docs/examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck lab-deps browser-deps node-deps
	$(BIN)/python scripts/test_streams.py -ra --durations=10

# Regenerate ucsdk/proto/*_pb2.py(i) from ucsdk/proto/*.proto (commit the result).
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

bench: $(STAMP) lab-deps
	$(BIN)/python bench/facade.py
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/lab.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/dial.py
	$(BIN)/python bench/pubsub.py
	$(BIN)/python bench/browser.py
	$(BIN)/python bench/peers.py

# Ten minutes of connect/ping/disconnect and relay/punch cycles on the NAT lab (root):
# are fds, threads, trio tasks and RSS flat? (SOAK_ARGS="--duration 60" for a short one)
soak: $(STAMP) lab-deps
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Fuzz every handler that parses network input for MINUTES (default 5); prints a table.
MINUTES ?= 5
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

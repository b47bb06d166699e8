# viewseg: every command a user needs. `make test` sets up on first use.
SHELL := /bin/bash
VENV ?= .venv
ACTIVATE := . $(VENV)/bin/activate
# Loopback-only DDS and a random domain, so tests never talk to a robot on the LAN.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup test test-all test-gpu demo clean

setup:
	bash scripts/setup.sh

# The default suite: everything except `slow` (and `gpu`, which skips itself without CUDA).
test: setup
	$(ACTIVATE) && python -m pytest -m "not slow" $(PYTEST_ARGS)

# Everything, including slow training/convergence tests.
test-all: setup
	$(ACTIVATE) && python -m pytest $(PYTEST_ARGS)

# On a CUDA machine: only the GPU tests (kernel parity, bf16 paths).
test-gpu: setup
	$(ACTIVATE) && python -m pytest -m gpu $(PYTEST_ARGS)

# The README's main job: sim camera + viewseg node + a client querying unseen poses (CPU is fine).
# Panels and logs go to out/demo/; DEMO_ARGS passes options (scripts/demo.py --help).
demo: setup
	$(ACTIVATE) && python scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf build $(VENV) .pytest_cache

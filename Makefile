# Two entry points: `make run` (the main job on the default config) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/exitstorm compare configs/camera_launch.toml --seeds 20 --out results/camera_launch_compare --force
	$(BIN)/exitstorm report results/camera_launch_compare

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.scheduler_vs_simpy

clean:
	rm -rf $(VENV) results

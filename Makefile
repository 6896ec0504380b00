# saunet: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.saunet-installed

.PHONY: setup demo demo-train lint test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,pi,bench,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/saunet-run examples/slices --out saunet-out/demo
	@echo "masks and overlays of the nine bundled test slices: saunet-out/demo/*_pred.png, *_overlay.png; summary: saunet-out/demo/results.json"

demo-train: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/saunet-train --data examples/slices --out runs/demo --epochs 3 --input-size 128 --batch-size 4
	$(VENV)/bin/saunet-eval --data examples/slices --model runs/demo --split test
	@echo "demo run folder: runs/demo (curves.png, samples.png, history.csv, best.keras)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs/demo saunet-out/demo .pytest_cache

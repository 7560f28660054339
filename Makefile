# The two commands of the README:  `make demo`  and  `make test`.
# Both set everything up first (scripts/setup.sh) into the virtual environment $(VENV) (default .venv).
# To use an environment of your own instead:  make test VENV= PYTHON=/path/to/python
VENV ?= .venv
CORES ?= 2

ifeq ($(strip $(VENV)),)
PYTHON ?= python3
STAMP := .cache/installed
else
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.genosae-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif

.PHONY: install demo test lint dryrun-slurm clean-demo

$(STAMP): pyproject.toml scripts/setup.sh scripts/slurm_test_cluster.sh
	VENV="$(VENV)" PYTHON="$(PYTHON)" bash scripts/setup.sh
	@mkdir -p $(dir $@) && touch $@

install: $(STAMP)

demo: install  ## the whole workflow on the bundled yeast genome and default model
	$(PYTHON) -m snakemake --profile workflow/profiles/default --cores $(CORES)

test: install  ## the test suite (includes a tiny end-to-end workflow run, the live-SLURM run and the notebook)
	$(PYTHON) -m pytest -q

lint: install
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m snakemake --lint --cores 1

dryrun-slurm: install
	$(PYTHON) -m snakemake --profile workflow/profiles/slurm --dry-run

clean-demo:
	rm -rf results logs .snakemake

# The two commands of the README:  `make demo`  and  `make test`.
PYTHON ?= python3
CORES ?= 2

.PHONY: install demo test lint dryrun-slurm clean-demo

.cache/installed: pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	@mkdir -p .cache && touch $@

install: .cache/installed

demo: install  ## the whole workflow on the bundled yeast genome and default model
	$(PYTHON) -m snakemake --profile workflow/profiles/default --cores $(CORES)

test: install  ## the test suite (includes a tiny end-to-end workflow run and the notebook)
	$(PYTHON) -m pytest -q

lint: install
	ruff check src tests benchmarks
	$(PYTHON) -m snakemake --lint --cores 1

dryrun-slurm: install
	$(PYTHON) -m snakemake --profile workflow/profiles/slurm --dry-run

clean-demo:
	rm -rf results logs .snakemake

import os
from pathlib import Path

from snakemake.utils import validate

from genosae._io import stable_hash
from genosae.config import (
    check_inputs,
    sae_trains_on_stream,
    schema_path,
    simulated_design_dir,
    validate_config,
)

# Validate before anything runs: unknown keys, wrong types and missing files stop here with the key path.
validate(config, schema=str(schema_path()), set_default=False)
config = validate_config(config, source="config")
check_inputs(config, source="config")

OUT = config["outdir"]
LOGS = f"{OUT}/logs"  # per output folder, so two configs never share a log
BENCH = f"{OUT}/benchmarks"
REF = f"{OUT}/reference"


def _write_effective_config(cfg, path):
    """The validated config (with --config overrides) that every CLI call reads; rewritten only on change."""
    import yaml

    text = yaml.safe_dump(cfg, sort_keys=False)
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


CONFIG_FILE = f"{OUT}/config.effective.yaml"
_write_effective_config(config, CONFIG_FILE)


def cfg_hash(*sections):
    """A params value that changes when the named config sections change (Snakemake reruns on it)."""
    return stable_hash([config.get(s) for s in sections])


DESIGNS = list(config["designs"])
SIMULATED = [d for d in DESIGNS if config["designs"][d].get("simulate")]
SIM_DIR = simulated_design_dir(
    OUT, "{design}"
)  # a simulated design's sheet, regions and truth
N_SHARDS = config["embed"]["n_shards"]
SEEDS = config["sae"]["seeds"]
MAIN_SEED = SEEDS[0]
# Compute jobs never contact a model hub; fetch models on a login node with `genosae fetch-model`.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


wildcard_constraints:
    design="|".join(DESIGNS) if DESIGNS else "NONE",
    part=r"\d+",
    seed=r"\d+",


def genosae(command):
    """Shell command calling the genosae CLI with the workflow's config file."""
    return f"genosae {command} --config {CONFIG_FILE}"


def design_windows_input(wildcards):
    """A simulated cohort needs its simulated sample sheet before its windows can be made."""
    if wildcards.design in SIMULATED:
        return [config["designs"][wildcards.design]["samples"]]
    return []


def all_targets():
    targets = [
        f"{OUT}/sae/seed{MAIN_SEED}/eval_metrics.json",
        f"{OUT}/features/feature_catalog.csv",
        f"{OUT}/features/dashboards/index.html",
    ]
    for design in DESIGNS:
        targets += [
            f"{OUT}/biomarkers/{design}/biomarkers.csv",
            f"{OUT}/biomarkers/{design}/report.html",
        ]
    return targets


onsuccess:
    print("\ngenosae finished. Reports:")
    for design in DESIGNS:
        print(
            f"  {OUT}/biomarkers/{design}/report.html  (CSV: {OUT}/biomarkers/{design}/biomarkers.csv)"
        )
    print(f"  feature dashboards: {OUT}/features/dashboards/index.html")

# genosae: SAE features of genomic language models -> candidate biomarkers.
# Run the demo:   snakemake --cores 2 --profile workflow/profiles/default
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/biomarkers.smk"


rule all:
    input:
        all_targets(),
    default_target: True

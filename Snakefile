# genosae: SAE features of genomic language models -> candidate biomarkers.
# Run the demo:   snakemake --cores 2 --profile workflow/profiles/default
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/control.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/biomarkers.smk"


rule all:
    default_target: True
    input:
        all_targets(),

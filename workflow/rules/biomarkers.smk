rule biomarkers:
    input:
        acts=f"{OUT}/features/window_acts/{{design}}",
        windows=f"{OUT}/windows/{{design}}.windows.tsv",
        store=f"{OUT}/embed/{{design}}/store",
        catalog=rules.features.output.catalog,
        sae=f"{SAE_MAIN}/cfg.json",
        motifs=rules.prepare_reference.output.motifs,
    output:
        biomarkers=f"{OUT}/biomarkers/{{design}}/biomarkers.csv",
        loci=f"{OUT}/biomarkers/{{design}}/biomarker_loci.csv",
        profiles=f"{OUT}/biomarkers/{{design}}/profiles.h5ad",
    log:
        f"{LOGS}/biomarkers/{{design}}.log",
    benchmark:
        f"{BENCH}/biomarkers/{{design}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        cfg=lambda wc: stable_hash([config["designs"][wc.design], config["biomarkers"]]),
        outdir=lambda wc: f"{OUT}/biomarkers/{wc.design}",
    shell:
        genosae("biomarkers")
        + f" --design {{wildcards.design}} --acts {{input.acts}} --windows {{input.windows}}"
        f" --catalog {{input.catalog}} --store {{input.store}} --sae {SAE_MAIN}"
        f" --reference {REF}/genome.fa --motifs {{input.motifs}} --out {{params.outdir}}"
        " > {log} 2>&1"


rule report:
    input:
        biomarkers=rules.biomarkers.output.biomarkers,
        sae_metrics=f"{SAE_MAIN}/eval_metrics.json",
        catalog=rules.features.output.catalog,
    output:
        f"{OUT}/biomarkers/{{design}}/report.html",
    log:
        f"{LOGS}/report/{{design}}.log",
    benchmark:
        f"{BENCH}/report/{{design}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        outdir=lambda wc: f"{OUT}/biomarkers/{wc.design}",
    shell:
        genosae("report")
        + " --design {wildcards.design} --biomarkers-dir {params.outdir}"
        f" --sae-metrics {{input.sae_metrics}} --features-dir {OUT}/features --out {{output}} > {{log}} 2>&1"

rule prepare_reference:
    output:
        fasta=f"{REF}/genome.fa",
        annotation=f"{REF}/annotation.gff3",
        chrom_sizes=f"{REF}/chrom_sizes.tsv",
        concepts=f"{REF}/concepts.tsv.gz",
        motifs=f"{REF}/motifs.meme",
        motif_hits=f"{REF}/motif_hits.tsv.gz",
    log:
        f"{LOGS}/prepare_reference.log",
    benchmark:
        f"{BENCH}/prepare_reference.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=cfg_hash("reference", "concepts", "motifs"),
    shell:
        genosae("prepare-reference") + f" --outdir {REF} > {{log}} 2>&1"


rule atlas_windows:
    input:
        chrom_sizes=rules.prepare_reference.output.chrom_sizes,
    output:
        f"{OUT}/windows/atlas.windows.tsv",
    log:
        f"{LOGS}/windows/atlas.log",
    benchmark:
        f"{BENCH}/windows/atlas.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=cfg_hash("atlas", "windows"),
    shell:
        genosae("windows")
        + f" --reference-dir {REF} --atlas --out {{output}} > {{log}} 2>&1"


rule simulate_cohort:
    input:
        fasta=rules.prepare_reference.output.fasta,
        motifs=rules.prepare_reference.output.motifs,
    output:
        samples=f"{SIM_DIR}/samples.tsv",
        regions=f"{SIM_DIR}/regions.bed",
        truth=f"{SIM_DIR}/truth.tsv",
    log:
        f"{LOGS}/simulate/{{design}}.log",
    benchmark:
        f"{BENCH}/simulate/{{design}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=lambda wc: stable_hash(config["designs"][wc.design]),
    shell:
        genosae("simulate") + f" --design {{wildcards.design}} --reference-dir {REF}"
        " --out $(dirname {output.samples}) > {log} 2>&1"


rule design_windows:
    input:
        design_windows_input,
        chrom_sizes=rules.prepare_reference.output.chrom_sizes,
        annotation=rules.prepare_reference.output.annotation,
    output:
        f"{OUT}/windows/{{design}}.windows.tsv",
    log:
        f"{LOGS}/windows/{{design}}.log",
    benchmark:
        f"{BENCH}/windows/{{design}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        cfg=lambda wc: stable_hash([config["designs"][wc.design], config["windows"]]),
    shell:
        genosae("windows")
        + f" --reference-dir {REF} --design {{wildcards.design}} --out {{output}} > {{log}} 2>&1"

STORE = f"{OUT}/embed/atlas/store"


# Above sae.stream_min_tokens (or for the whole genome) the SAE trains on the model run over the atlas
# windows through a shuffle buffer, in parallel with the embedding, instead of reading the store.
SAE_FROM_STREAM = sae_trains_on_stream(config)


rule train_sae:
    input:
        (
            [f"{OUT}/windows/atlas.windows.tsv", f"{REF}/genome.fa"]
            if SAE_FROM_STREAM
            else [STORE]
        ),
    output:
        cfg=f"{OUT}/sae/seed{{seed}}/cfg.json",
        weights=f"{OUT}/sae/seed{{seed}}/sae_weights.safetensors",
    log:
        f"{LOGS}/sae/train.seed{{seed}}.log",
    benchmark:
        f"{BENCH}/sae/train.seed{{seed}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1  # small SAE steps run faster on one thread; seeds train in parallel
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["model"]["device"].startswith("cuda") else 0,
    params:
        cfg=cfg_hash("sae", "atlas"),
        outdir=lambda wc: f"{OUT}/sae/seed{wc.seed}",
        source=(
            f"--windows {OUT}/windows/atlas.windows.tsv --reference-dir {REF}"
            if SAE_FROM_STREAM
            else f"--store {STORE}"
        ),
    shell:
        genosae("train-sae")
        + " {params.source} --out {params.outdir} --seed {wildcards.seed} --threads {threads} > {log} 2>&1"


rule evaluate_sae:
    input:
        store=STORE,
        cfg=f"{OUT}/sae/seed{{seed}}/cfg.json",
        fasta=rules.prepare_reference.output.fasta,
    output:
        f"{OUT}/sae/seed{{seed}}/eval_metrics.json",
    log:
        f"{LOGS}/sae/evaluate.seed{{seed}}.log",
    benchmark:
        f"{BENCH}/sae/evaluate.seed{{seed}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        outdir=lambda wc: f"{OUT}/sae/seed{wc.seed}",
    shell:
        genosae("evaluate-sae")
        + f" --store {{input.store}} --sae {{params.outdir}} --reference-dir {REF}"
        " --out {output} > {log} 2>&1"


rule sweep_sae:
    input:
        STORE,
    output:
        f"{OUT}/sae/sweep/sweep.csv",
    log:
        f"{LOGS}/sae/sweep.log",
    benchmark:
        f"{BENCH}/sae/sweep.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        cfg=cfg_hash("sae"),
    shell:
        genosae("sweep-sae")
        + f" --store {{input}} --out {OUT}/sae/sweep > {{log}} 2>&1"

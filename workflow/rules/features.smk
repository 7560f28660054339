SAE_MAIN = f"{OUT}/sae/seed{MAIN_SEED}"


rule encode_codes:
    input:
        store=STORE,
        sae=f"{SAE_MAIN}/cfg.json",
    output:
        directory(f"{OUT}/codes/atlas"),
    log:
        f"{LOGS}/features/encode_codes.log",
    benchmark:
        f"{BENCH}/features/encode_codes.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        genosae("encode-codes")
        + f" --store {{input.store}} --sae {SAE_MAIN} --out {{output}} --no-progress > {{log}} 2>&1"


rule features:
    input:
        store=STORE,
        sae=f"{SAE_MAIN}/cfg.json",
        codes=rules.encode_codes.output[0],
        replicate=[f"{OUT}/sae/seed{s}/cfg.json" for s in SEEDS[1:2]],
        concepts=rules.prepare_reference.output.concepts,
        motifs=rules.prepare_reference.output.motifs,
        control=(
            [CONTROL_STORE, f"{CONTROL_SAE}/cfg.json", f"{CONTROL_DIR}/codes/atlas"]
            if CONTROL
            else []
        ),
    output:
        catalog=f"{OUT}/features/feature_catalog.csv",
        concepts=f"{OUT}/features/feature_concepts.csv",
        motif_capture=f"{OUT}/features/motif_capture.csv",
        motif_names=f"{OUT}/features/motif_names.csv",
        index=f"{OUT}/features/dashboards/index.html",
    log:
        f"{LOGS}/features/features.log",
    benchmark:
        f"{BENCH}/features/features.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,  # the step streams: 2.0 GB peak for the demo, flat with the atlas (docs/scaling.md)
        runtime=60,
    params:
        cfg=cfg_hash("features"),
        replicate=" ".join(f"--sae-replicate {OUT}/sae/seed{s}" for s in SEEDS[1:2]),
        control=(
            f"--control-store {CONTROL_STORE} --control-sae {CONTROL_SAE} --control-codes {CONTROL_DIR}/codes/atlas"
            f" --control-out {CONTROL_DIR}/features"
            if CONTROL
            else ""
        ),
    shell:
        genosae("features")
        + f" --store {{input.store}} --sae {SAE_MAIN} --codes {{input.codes}} {{params.replicate}} {{params.control}}"
        f" --reference-dir {REF} --out {OUT}/features > {{log}} 2>&1"


rule design_window_acts:
    input:
        store=f"{OUT}/embed/{{design}}/store",
        sae=f"{SAE_MAIN}/cfg.json",
    output:
        directory(f"{OUT}/features/window_acts/{{design}}"),
    log:
        f"{LOGS}/features/window_acts.{{design}}.log",
    benchmark:
        f"{BENCH}/features/window_acts.{{design}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        f"genosae window-acts --store {{input.store}} --sae {SAE_MAIN} --out {{output}} > {{log}} 2>&1"

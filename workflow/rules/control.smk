# The untrained-architecture control (config control_model.enabled): the configured model randomly
# initialised, run through the same atlas windows and the same SAE training. The features step aligns
# its SAE beside the trained model's, so a concept or motif counts only where it beats the control.
CONTROL = bool(config["control_model"]["enabled"])
CONTROL_DIR = f"{OUT}/control_model"
CONTROL_STORE = f"{CONTROL_DIR}/embed/atlas/store"
CONTROL_SAE = f"{CONTROL_DIR}/sae/seed{MAIN_SEED}"


rule control_model:
    output:
        directory(f"{CONTROL_DIR}/model"),
    log:
        f"{LOGS}/control_model/init.log",
    benchmark:
        f"{BENCH}/control_model/init.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=cfg_hash("model", "control_model"),
    shell:
        genosae("control-model") + " --out {output} > {log} 2>&1"


rule control_embed:
    input:
        windows=f"{OUT}/windows/atlas.windows.tsv",
        fasta=rules.prepare_reference.output.fasta,
        model=rules.control_model.output,
    output:
        directory(CONTROL_STORE),
    log:
        f"{LOGS}/control_model/embed.log",
    benchmark:
        f"{BENCH}/control_model/embed.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1 if config["model"]["device"].startswith("cuda") else 0,
    params:
        cfg=cfg_hash("model", "embed", "control_model"),
    shell:
        genosae("embed")
        + f" --windows {{input.windows}} --reference-dir {REF} --model {{input.model}}"
        " --out {output} --no-progress > {log} 2>&1"


rule control_train_sae:
    input:
        CONTROL_STORE,
    output:
        cfg=f"{CONTROL_SAE}/cfg.json",
        weights=f"{CONTROL_SAE}/sae_weights.safetensors",
    log:
        f"{LOGS}/control_model/train_sae.log",
    benchmark:
        f"{BENCH}/control_model/train_sae.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1 if config["model"]["device"].startswith("cuda") else 0,
    params:
        cfg=cfg_hash("sae", "atlas", "control_model"),
    shell:
        genosae("train-sae")
        + f" --store {{input}} --out {CONTROL_SAE} --seed {MAIN_SEED} --threads {{threads}} > {{log}} 2>&1"


rule control_encode_codes:
    input:
        store=CONTROL_STORE,
        sae=f"{CONTROL_SAE}/cfg.json",
    output:
        directory(f"{CONTROL_DIR}/codes/atlas"),
    log:
        f"{LOGS}/control_model/encode_codes.log",
    benchmark:
        f"{BENCH}/control_model/encode_codes.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        genosae("encode-codes")
        + f" --store {{input.store}} --sae {CONTROL_SAE} --out {{output}} --no-progress > {{log}} 2>&1"

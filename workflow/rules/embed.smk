# Embedding is sharded: each part is one job (one GPU each on a cluster); a merge step joins the manifests.


rule embed_part:
    input:
        windows=f"{OUT}/windows/{{name}}.windows.tsv",
        fasta=rules.prepare_reference.output.fasta,
    output:
        temp(directory(f"{OUT}/embed/{{name}}/part{{part}}")),
    log:
        f"{LOGS}/embed/{{name}}.part{{part}}.log",
    benchmark:
        f"{BENCH}/embed/{{name}}.part{{part}}.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1 if config["model"]["device"].startswith("cuda") else 0,
    params:
        cfg=cfg_hash("model", "embed"),
        n=N_SHARDS,
    shell:
        genosae("embed") + f" --windows {{input.windows}} --reference-dir {REF}"
        " --out {output} --part {wildcards.part}/{params.n} > {log} 2>&1"


rule merge_store:
    input:
        lambda wc: [f"{OUT}/embed/{wc.name}/part{i}" for i in range(N_SHARDS)],
    output:
        directory(f"{OUT}/embed/{{name}}/store"),
    log:
        f"{LOGS}/embed/{{name}}.merge.log",
    benchmark:
        f"{BENCH}/embed/{{name}}.merge.tsv"
    conda:
        "../envs/genosae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "genosae merge-store --parts {input} --out {output} > {log} 2>&1"

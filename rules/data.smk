# ingest + validate → group-stratified split → hierarchy index


rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        f"{RESULTS}/data/{{dataset}}_ingested.parquet",
    params:
        code=package_code("cli:_cmd_ingest"),
        labels=lambda wildcards, input: f"--labels {input.labels}" if "labels" in input.keys() else "",
    log:
        f"{RESULTS}/logs/ingest/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest/{{dataset}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat ingest --features {input.features} {params.labels} --out {output} > {log} 2>&1"


rule split:
    input:
        f"{RESULTS}/data/train_ingested.parquet",
    output:
        train=f"{RESULTS}/data/train.parquet",
        val=f"{RESULTS}/data/val.parquet",
        report=f"{RESULTS}/data/split_report.json",
    params:
        code=package_code("cli:_cmd_split"),
        fraction=config["split"]["fraction"],
        seed=config["split"]["seed"],
    log:
        f"{RESULTS}/logs/split.log",
    benchmark:
        f"{RESULTS}/benchmarks/split.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat split --data {input} --train {output.train} --val {output.val} --report {output.report}"
        " --fraction {params.fraction} --seed {params.seed} > {log} 2>&1"


rule test_rows:
    # The test rows need no split; a copy keeps one name per split for every later rule.
    input:
        f"{RESULTS}/data/test_ingested.parquet",
    output:
        f"{RESULTS}/data/test.parquet",
    log:
        f"{RESULTS}/logs/test_rows.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        "cp {input} {output} 2> {log}"


rule hierarchy:
    input:
        f"{RESULTS}/data/train.parquet",
    output:
        HIERARCHY,
    params:
        code=package_code("cli:_cmd_hierarchy"),
    log:
        f"{RESULTS}/logs/hierarchy.log",
    benchmark:
        f"{RESULTS}/benchmarks/hierarchy.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat hierarchy --data {input} --out {output} > {log} 2>&1"

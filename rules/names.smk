# Llama name synthesis (teacher, sees the labels) → LoRA namer (student) → inferred names.


rule synthesize_names:
    input:
        rows=lambda wildcards: rows_for_split(wildcards.split),
        base=namer_base_input,
    output:
        f"{RESULTS}/names/teacher/{{split}}.parquet",
    params:
        base=namer_base(),
        templates=config["namer"]["templates"],
        generate=config["namer"]["teacher"],
    log:
        f"{RESULTS}/logs/synthesize_names/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize_names/{{split}}.tsv"
    wildcard_constraints:
        split="train|val",
    threads: config["threads"]["predict"]
    resources:
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/synthesize_names.py"


rule train_namer:
    input:
        names=f"{RESULTS}/names/teacher/train.parquet",
        base=namer_base_input,
    output:
        directory(f"{RESULTS}/models/namer"),
    params:
        base=namer_base(),
        templates=config["namer"]["templates"],
        train=config["namer"]["train"],
        # Outside the output folder, so a killed run resumes (Snakemake clears incomplete outputs).
        checkpoints=f"{RESULTS}/checkpoints/namer",
    log:
        f"{RESULTS}/logs/train_namer.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_namer.tsv"
    threads: config["threads"]["train"]
    resources:
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/train_namer.py"


rule infer_names:
    input:
        model=f"{RESULTS}/models/namer",
        rows=lambda wildcards: rows_for_split(wildcards.split),
    output:
        names=f"{RESULTS}/names/student/{{split}}.parquet",
        summary=f"{RESULTS}/names/student/{{split}}.summary.json",
    params:
        templates=config["namer"]["templates"],
        generate=config["namer"]["student"],
    log:
        f"{RESULTS}/logs/infer_names/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/infer_names/{{split}}.tsv"
    threads: config["threads"]["predict"]
    resources:
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/infer_names.py"


rule name_quality:
    # chrF of teacher and student names against the true product names (synthetic data only).
    input:
        truth=config["data"]["true_names"] or [],
        rows=[rows_for_split(split) for split in ("train", "val", "test")],
        teacher=expand(f"{RESULTS}/names/teacher/{{split}}.parquet", split=["train", "val"]),
        student=expand(f"{RESULTS}/names/student/{{split}}.parquet", split=["val", "test"]),
    output:
        csv=report(f"{RESULTS}/report/names.csv", category="Tables"),
        md=f"{RESULTS}/report/names.md",
    log:
        f"{RESULTS}/logs/name_quality.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/name_quality.py"

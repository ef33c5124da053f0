# Llama name synthesis (teacher, sees the labels) → LoRA namer (student) → inferred names.
# Each split's generation runs as namer.shards jobs (one GPU each; a killed run redoes only the
# shards that did not finish), gathered by a cheap local rule. The shards split the split's
# length-sorted batches round robin (prodcat.names.generation.shard_batches), so the names do not depend on
# the shard count.


localrules:
    gather_names,


rule synthesize_names:
    input:
        rows=lambda wildcards: rows_for_split(wildcards.split),
        base=namer_base_input,
    output:
        names=temp(name_shard("teacher", "{split}", "{shard}")),
        summary=temp(name_shard("teacher", "{split}", "{shard}", "summary.json")),
    params:
        code=package_code("workflow:synthesize_names"),
        base=namer_base(),
        templates=config["namer"]["templates"],
        generate=config["namer"]["teacher"],
        shard=lambda wildcards: int(wildcards.shard),
        shards=NAMER_SHARDS,
    log:
        f"{RESULTS}/logs/synthesize_names/{{split}}.{{shard}}-of-{NAMER_SHARDS}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize_names/{{split}}.{{shard}}-of-{NAMER_SHARDS}.tsv"
    wildcard_constraints:
        split="train|val",
        shard=r"\d+",
    threads: config["threads"]["predict"]
    resources:
        **job_resources("synthesize_names"),
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/synthesize_names.py"


rule gather_names:
    # The shards of a split in its row order: the table one shard would have written.
    input:
        rows=lambda wildcards: rows_for_split(wildcards.split),
        names=lambda wildcards: name_shards(wildcards.which, wildcards.split),
        summaries=lambda wildcards: name_shards(wildcards.which, wildcards.split, "summary.json"),
    output:
        names=f"{RESULTS}/names/{{which}}/{{split}}.parquet",
        summary=f"{RESULTS}/names/{{which}}/{{split}}.summary.json",
    params:
        code=package_code("workflow:gather_names"),
    log:
        f"{RESULTS}/logs/gather_names/{{which}}.{{split}}.log",
    wildcard_constraints:
        which="teacher|student",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/gather_names.py"


rule train_namer:
    input:
        names=f"{RESULTS}/names/teacher/train.parquet",
        base=namer_base_input,
    output:
        directory(f"{RESULTS}/models/namer"),
    params:
        code=package_code("workflow:train_namer"),
        base=namer_base(),
        templates=config["namer"]["templates"],
        train=config["namer"]["train"],
        # Outside the output folder, so a killed run resumes (Snakemake clears incomplete outputs).
        checkpoints=f"{RESULTS}/checkpoints/namer",
        profile=PROFILE_TRAINING,
    log:
        f"{RESULTS}/logs/train_namer.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_namer.tsv"
    threads: config["threads"]["train"]
    resources:
        **job_resources("train_namer"),
        gpu=training_gpus("train_namer"),
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/train_namer.py"


rule infer_names:
    input:
        model=f"{RESULTS}/models/namer",
        rows=lambda wildcards: rows_for_split(wildcards.split),
    output:
        names=temp(name_shard("student", "{split}", "{shard}")),
        summary=temp(name_shard("student", "{split}", "{shard}", "summary.json")),
    params:
        code=package_code("workflow:infer_names"),
        templates=config["namer"]["templates"],
        generate=config["namer"]["student"],
        shard=lambda wildcards: int(wildcards.shard),
        shards=NAMER_SHARDS,
    log:
        f"{RESULTS}/logs/infer_names/{{split}}.{{shard}}-of-{NAMER_SHARDS}.log",
    benchmark:
        f"{RESULTS}/benchmarks/infer_names/{{split}}.{{shard}}-of-{NAMER_SHARDS}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    threads: config["threads"]["predict"]
    resources:
        **job_resources("infer_names"),
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
        csv=report(
            f"{RESULTS}/report/names.csv",
            category="Tables",
            caption="../report/names.rst",
            labels={"table": "names", "content": "chrF of teacher and student names"},
        ),
        md=f"{RESULTS}/report/names.md",
    params:
        code=package_code("workflow:name_quality"),
        # what the caption says about the teacher: the real Llama or a (pretrained) stand-in
        teacher={"tiny": config["tiny"]["enabled"], "warmup": config["tiny"].get("llama", {}).get("warmup")},
    log:
        f"{RESULTS}/logs/name_quality.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/name_quality.py"

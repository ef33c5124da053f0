# The labelers: train → predict → correct. Seq2seq and charngram labelers have rules of their own
# (GPU vs CPU jobs, their inputs); every rule's script goes through prodcat.labelers.interface.


rule train_labeler:
    wildcard_constraints:
        labeler=SEQ2SEQ_PATTERN,
    input:
        unpack(labeler_train_inputs),
    output:
        directory(f"{RESULTS}/models/{{labeler}}"),
    params:
        code=lambda wildcards: package_code("workflow:train_labeler", labeler=wildcards.labeler),
        # only what training reads, so that a change of prediction settings does not retrain
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "train"),
        base=lambda wildcards: base_model(wildcards.labeler),
        # Outside the output folder, so a killed run resumes (Snakemake clears incomplete outputs).
        checkpoints=lambda wildcards: f"{RESULTS}/checkpoints/{wildcards.labeler}",
        profile=PROFILE_TRAINING,
    log:
        f"{RESULTS}/logs/train_labeler/{{labeler}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_labeler/{{labeler}}.tsv"
    threads: config["threads"]["train"]
    resources:
        **job_resources("train_labeler"),
        gpu=training_gpus("train_labeler"),
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/train_labeler.py"


rule predict_labeler:
    # Every decoding in one job (the model is loaded once): raw (free generation, the paper) and,
    # when configured, constrained (only valid paths can be written).
    input:
        unpack(labeler_predict_inputs),
    output:
        predictions=expand(
            f"{RESULTS}/predictions/{{{{labeler}}}}/{{{{split}}}}.{{decoding}}.parquet", decoding=DECODINGS
        ),
        summaries=expand(
            f"{RESULTS}/predictions/{{{{labeler}}}}/{{{{split}}}}.{{decoding}}.summary.json", decoding=DECODINGS
        ),
    params:
        code=lambda wildcards: package_code("workflow:predict_labeler", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "predict"),
        decodings=DECODINGS,
    log:
        f"{RESULTS}/logs/predict_labeler/{{labeler}}.{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict_labeler/{{labeler}}.{{split}}.tsv"
    wildcard_constraints:
        labeler=SEQ2SEQ_PATTERN,
    threads: config["threads"]["predict"]
    resources:
        **job_resources("predict_labeler"),
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/predict_labeler.py"


rule train_charngram:
    # The CPU baseline and fourth voter: character n-grams, multinomial naive Bayes over whole label
    # paths (prodcat.labelers.charngram), so its output is a path of the hierarchy by construction.
    input:
        train=rows_for_split("train"),
        val=rows_for_split("val"),
        hierarchy=HIERARCHY,
    output:
        directory(f"{RESULTS}/models/{{labeler}}"),
    params:
        code=lambda wildcards: package_code("workflow:train_labeler", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "train"),
    log:
        f"{RESULTS}/logs/train_charngram/{{labeler}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_labeler/{{labeler}}.tsv"
    wildcard_constraints:
        labeler=CHARNGRAM_PATTERN,
    threads: 1
    resources:
        **job_resources("train_charngram"),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/train_labeler.py"


rule predict_charngram:
    input:
        model=f"{RESULTS}/models/{{labeler}}",
        rows=lambda wildcards: rows_for_split(wildcards.split),
    # its one decoding is raw: every prediction is a path of the hierarchy
    output:
        predictions=[f"{RESULTS}/predictions/{{labeler}}/{{split}}.raw.parquet"],
        summaries=[f"{RESULTS}/predictions/{{labeler}}/{{split}}.raw.summary.json"],
    params:
        code=lambda wildcards: package_code("workflow:predict_labeler", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "predict"),
        decodings=["raw"],
    log:
        f"{RESULTS}/logs/predict_charngram/{{labeler}}.{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict_labeler/{{labeler}}.{{split}}.tsv"
    wildcard_constraints:
        labeler=CHARNGRAM_PATTERN,
    threads: 1
    resources:
        **job_resources("predict_charngram"),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/predict_labeler.py"


rule correct:
    # Both corrections run (they take seconds); correction.method picks the one that feeds the
    # submission, and Table 1 shows both: stage "corrected" (top-down, the paper) and "joint".
    input:
        hierarchy=HIERARCHY,
        predictions=f"{RESULTS}/predictions/{{labeler}}/{{split}}.raw.parquet",
    output:
        f"{RESULTS}/predictions/{{labeler}}/{{split}}.{{stage}}.parquet",
    params:
        code=package_code("cli:_cmd_correct"),
        method=lambda wildcards: CORRECTION_METHODS[wildcards.stage],
        salvage="--salvage" if config["correction"].get("salvage", False) else "",
    log:
        f"{RESULTS}/logs/correct/{{labeler}}.{{split}}.{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/correct/{{labeler}}.{{split}}.{{stage}}.tsv"
    wildcard_constraints:
        stage="|".join(CORRECTED_STAGES),
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat correct --hierarchy {input.hierarchy} --predictions {input.predictions}"
        " --method {params.method} {params.salvage} --out {output} > {log} 2>&1"

# evaluation (Table 1), efficiency (Table 2), submissions


rule evaluate:
    input:
        truth=lambda wildcards: rows_for_split(wildcards.split),
        # the retailers seen in training: Table 1's accuracy on rows with an unseen one
        train=rows_for_split("train"),
        hierarchy=HIERARCHY,
        predictions=lambda wildcards: [path for _, path in table1_entries(wildcards.split)],
    output:
        f"{RESULTS}/metrics/{{split}}.json",
    params:
        code=package_code("cli:_cmd_evaluate"),
        named=lambda wildcards: " ".join(f"{name}={path}" for name, path in table1_entries(wildcards.split)),
    log:
        f"{RESULTS}/logs/evaluate/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{split}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat evaluate --truth {input.truth} --hierarchy {input.hierarchy} --split {wildcards.split}"
        " --seen-retailers {input.train} --out {output} {params.named} > {log} 2>&1"


rule report_tables:
    input:
        submission=SUBMISSION,
        metrics=expand(f"{RESULTS}/metrics/{{split}}.json", split=EVAL_SPLITS),
        models=[f"{RESULTS}/models/{model}" for model in EFFICIENCY_MODELS],
        predict_summaries=[efficiency_files(model)[0] for model in EFFICIENCY_MODELS],
        train_benchmarks=[efficiency_files(model)[1] for model in EFFICIENCY_MODELS],
        constrained_summaries=[f"{RESULTS}/predictions/{m}/test.constrained.summary.json" for m in CONSTRAINED_LABELERS],
    output:
        metrics_csv=report(
            f"{RESULTS}/report/metrics.csv",
            category="Tables",
            caption="../report/metrics.rst",
            labels={"table": "Table 1", "content": "accuracy and F1 per model, stage and split"},
        ),
        metrics_md=f"{RESULTS}/report/metrics.md",
        efficiency_csv=report(
            f"{RESULTS}/report/efficiency.csv",
            category="Tables",
            caption="../report/efficiency.rst",
            labels={"table": "Table 2", "content": "efficiency per model"},
        ),
        efficiency_md=f"{RESULTS}/report/efficiency.md",
        operators_csv=report(
            f"{RESULTS}/report/operators.csv",
            category="Tables",
            caption="../report/operators.rst",
            labels={"table": "Table 3", "content": "top operators of a training step"},
        ),
        operators_md=f"{RESULTS}/report/operators.md",
    params:
        code=package_code("workflow:report_tables"),
        models=EFFICIENCY_MODELS,
        constrained_models=CONSTRAINED_LABELERS,
        ensembles=ensemble_comparisons(),
        top_operators=config["profile"]["top_operators"],
    log:
        f"{RESULTS}/logs/report_tables.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/report_tables.py"


rule submission:
    input:
        lambda wildcards: predictions(wildcards.model, "test", SUBMIT_STAGE),
    output:
        f"{RESULTS}/submission/{{model}}.predict",
    params:
        code=package_code("cli:_cmd_submission"),
    log:
        f"{RESULTS}/logs/submission/{{model}}.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat submission --predictions {input} --out {output} > {log} 2>&1"


rule plots:
    input:
        submission=SUBMISSION,
        metrics=f"{RESULTS}/report/metrics.csv",
        models=[f"{RESULTS}/models/{model}" for model in TRAINER_MODELS],
    output:
        accuracy=report(
            f"{RESULTS}/report/item_accuracy.svg",
            category="Figures",
            caption="../report/accuracy.rst",
            labels={"figure": "item accuracy"},
        ),
        f1=report(
            f"{RESULTS}/report/f1_per_level.svg",
            category="Figures",
            caption="../report/f1.rst",
            labels={"figure": "macro F1 per level"},
        ),
        curves=report(
            f"{RESULTS}/report/training_curves.svg",
            category="Figures",
            caption="../report/curves.rst",
            labels={"figure": "training curves"},
        ),
    params:
        code=package_code("workflow:plots"),
        models=TRAINER_MODELS,
        # the item-accuracy figure's ensemble panel (votes and stacks) and its outlined submission bar
        ensembles=list(ENSEMBLES) + list(STACKED),
    log:
        f"{RESULTS}/logs/plots.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/plots.py"


rule confidence_report:
    # Where to trust the predictions: calibration (reliability, ECE), coverage vs accuracy, and the
    # submitted model's errors, validation and test apart.
    input:
        submission=SUBMISSION,
        truth=[rows_for_split(split) for split in EVAL_SPLITS],
        train=rows_for_split("train"),
        tables=[confidence_table(model, split) for model in CONFIDENCE_MODELS for split in EVAL_SPLITS],
    output:
        calibration_csv=report(
            f"{RESULTS}/report/calibration.csv",
            category="Confidence",
            caption="../report/calibration.rst",
            labels={"table": "calibration", "content": "ECE and accuracy of the most confident rows per model"},
        ),
        calibration_md=f"{RESULTS}/report/calibration.md",
        errors_csv=report(
            f"{RESULTS}/report/errors.csv",
            category="Confidence",
            caption="../report/errors.rst",
            labels={"table": "errors", "content": "the submitted model's errors"},
        ),
        errors_md=f"{RESULTS}/report/errors.md",
        reliability=report(
            f"{RESULTS}/report/reliability.svg",
            category="Confidence",
            caption="../report/reliability.rst",
            labels={"figure": "reliability diagram"},
        ),
        coverage=report(
            f"{RESULTS}/report/coverage.svg",
            category="Confidence",
            caption="../report/coverage.rst",
            labels={"figure": "coverage vs accuracy"},
        ),
    params:
        code=package_code("workflow:confidence_report"),
        models=CONFIDENCE_MODELS,
        splits=EVAL_SPLITS,
    log:
        f"{RESULTS}/logs/confidence_report.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/confidence_report.py"

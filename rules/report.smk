# evaluation (Table 1), efficiency (Table 2), submissions


rule evaluate:
    input:
        truth=lambda wildcards: rows_for_split(wildcards.split),
        hierarchy=f"{RESULTS}/data/hierarchy.json",
        predictions=lambda wildcards: [path for _, path in table1_entries(wildcards.split)],
    output:
        f"{RESULTS}/metrics/{{split}}.json",
    params:
        named=lambda wildcards: " ".join(f"{name}={path}" for name, path in table1_entries(wildcards.split)),
    log:
        f"{RESULTS}/logs/evaluate/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{split}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat evaluate --truth {input.truth} --hierarchy {input.hierarchy} --split {wildcards.split}"
        " --out {output} {params.named} > {log} 2>&1"


rule report_tables:
    input:
        metrics=expand(f"{RESULTS}/metrics/{{split}}.json", split=EVAL_SPLITS),
        models=expand(f"{RESULTS}/models/{{labeler}}", labeler=LABELERS),
        predict_summaries=expand(f"{RESULTS}/predictions/{{labeler}}/test.summary.json", labeler=LABELERS),
        train_benchmarks=expand(f"{RESULTS}/benchmarks/train_labeler/{{labeler}}.tsv", labeler=LABELERS),
    output:
        metrics_csv=report(f"{RESULTS}/report/metrics.csv", category="Tables"),
        metrics_md=f"{RESULTS}/report/metrics.md",
        efficiency_csv=report(f"{RESULTS}/report/efficiency.csv", category="Tables"),
        efficiency_md=f"{RESULTS}/report/efficiency.md",
    params:
        models=LABELERS,
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
    log:
        f"{RESULTS}/logs/submission/{{model}}.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat submission --predictions {input} --out {output} > {log} 2>&1"

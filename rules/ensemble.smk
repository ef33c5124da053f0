# hard voting with hierarchy compliance over the corrected labelers


rule level_accuracy:
    # Per-level validation accuracy of each voter: breaks vote ties (and weights votes if asked).
    input:
        truth=rows_for_split("val"),
        predictions=expand(predictions("{labeler}", "val", "{{stage}}"), labeler=config["ensemble"]["labelers"]),
    output:
        f"{RESULTS}/ensemble/level_accuracy.{{stage}}.json",
    params:
        models=config["ensemble"]["labelers"],
    log:
        f"{RESULTS}/logs/level_accuracy.{{stage}}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/level_accuracy.py"


rule vote:
    input:
        hierarchy=f"{RESULTS}/data/hierarchy.json",
        accuracy=f"{RESULTS}/ensemble/level_accuracy.{{stage}}.json",
        predictions=expand(predictions("{labeler}", "{{split}}", "{{stage}}"), labeler=config["ensemble"]["labelers"]),
    output:
        f"{RESULTS}/predictions/ensemble/{{split}}.{{stage}}.parquet",
    params:
        named=lambda wildcards, input: " ".join(
            f"{name}={path}" for name, path in zip(config["ensemble"]["labelers"], input.predictions)
        ),
        weighted="--weighted" if config["ensemble"].get("weighted", False) else "",
    log:
        f"{RESULTS}/logs/vote/{{split}}.{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/vote/{{split}}.{{stage}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat vote --hierarchy {input.hierarchy} --accuracy {input.accuracy} {params.weighted}"
        " --out {output} {params.named} > {log} 2>&1"

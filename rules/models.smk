# Base models: tiny stand-ins built here (tiny.enabled) or hub models fetched at a pinned revision.
# Either way every model rule reads a local folder, so compute jobs never need the hub.


rule build_tiny_model:
    # Only in tiny mode: a random-init stand-in for a hub model, saved like the real one; the Llama
    # stand-in is then pretrained on the sample's catalogue (tiny.llama.warmup).
    input:
        unpack(tiny_model_inputs),
    output:
        directory(f"{RESULTS}/models/base/{{arch}}"),
    params:
        code=package_code("workflow:build_tiny_model"),
        dims=lambda wildcards: config["tiny"][wildcards.arch],
        seed=config["tiny"].get("seed", 0),
        templates=config["namer"]["templates"],
    log:
        f"{RESULTS}/logs/build_tiny_model/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/build_tiny_model/{{arch}}.tsv"
    threads: 1
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/build_tiny_model.py"


rule download_model:
    # A hub model at its pinned revision, resolved through the hub cache (a download, or the cache
    # alone with HF_HUB_OFFLINE=1) and linked into the results. A local rule: compute nodes often
    # have no internet. A changed revision reruns it, and so everything trained from it.
    output:
        directory(f"{RESULTS}/models/hub/{{arch}}"),
    params:
        code=package_code("workflow:download_model"),
        repo_id=lambda wildcards: hub_model(wildcards.arch)["id"],
        revision=lambda wildcards: hub_model(wildcards.arch)["revision"],
    log:
        f"{RESULTS}/logs/download_model/{{arch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/download_model/{{arch}}.tsv"
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/download_model.py"

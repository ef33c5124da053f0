# Combining an ensemble's members: the paper's hierarchy-compliant hard vote, and the learned
# arbiter (stack) fit on the members' validation predictions.


rule level_accuracy:
    # Per-level validation accuracy of each voter: breaks vote ties (and weights votes if asked).
    input:
        truth=rows_for_split("val"),
        predictions=lambda wildcards: [predictions(m, "val", wildcards.stage) for m in voters(wildcards.stage)],
    output:
        f"{RESULTS}/ensemble/level_accuracy.{{stage}}.json",
    params:
        code=package_code("workflow:level_accuracy"),
        models=lambda wildcards: voters(wildcards.stage),
    log:
        f"{RESULTS}/logs/level_accuracy.{{stage}}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/level_accuracy.py"


rule vote:
    input:
        hierarchy=HIERARCHY,
        accuracy=f"{RESULTS}/ensemble/level_accuracy.{{stage}}.json",
        predictions=lambda wildcards: ensemble_inputs(wildcards.ensemble, wildcards.split, wildcards.stage),
    output:
        f"{RESULTS}/predictions/{{ensemble}}/{{split}}.{{stage}}.parquet",
    params:
        code=package_code("cli:_cmd_vote"),
        # member order is the last tie rule: keep it as configured
        named=lambda wildcards, input: named_inputs(wildcards.ensemble, input.predictions),
        weighted="--weighted" if config["ensemble"].get("weighted", False) else "",
    log:
        f"{RESULTS}/logs/vote/{{ensemble}}.{{split}}.{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/vote/{{ensemble}}.{{split}}.{{stage}}.tsv"
    wildcard_constraints:
        ensemble="|".join(ENSEMBLES),
        stage="|".join(VOTE_STAGES),
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat vote --hierarchy {input.hierarchy} --accuracy {input.accuracy} {params.weighted}"
        " --out {output} {params.named} > {log} 2>&1"


rule score_candidates:
    # A member's log-probability of every path any member proposes (teacher forcing, no generation):
    # lets the stack hear each member on the candidates it did not write. One job a split, so an
    # edit of the test rows leaves the validation scores (and the stack fit on them) alone.
    input:
        unpack(candidate_scoring_inputs),
    output:
        f"{RESULTS}/predictions/{{labeler}}/{{split}}.candidates.parquet",
    params:
        code=lambda wildcards: package_code("workflow:score_candidates", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "predict"),
    log:
        f"{RESULTS}/logs/score_candidates/{{labeler}}.{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_candidates/{{labeler}}.{{split}}.tsv"
    wildcard_constraints:
        labeler=SEQ2SEQ_PATTERN,
        split="|".join(STACK_SPLITS),
    threads: config["threads"]["predict"]
    resources:
        # cheaper than the prediction it follows (one decoder pass a candidate, no generation)
        **job_resources("predict_labeler"),
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/score_candidates.py"


rule score_candidates_charngram:
    # The same for charngram: the log posterior of each candidate path (CPU, seconds).
    input:
        unpack(candidate_scoring_inputs),
    output:
        f"{RESULTS}/predictions/{{labeler}}/{{split}}.candidates.parquet",
    params:
        code=lambda wildcards: package_code("workflow:score_candidates", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "predict"),
    log:
        f"{RESULTS}/logs/score_candidates/{{labeler}}.{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_candidates/{{labeler}}.{{split}}.tsv"
    wildcard_constraints:
        labeler=CHARNGRAM_PATTERN,
        split="|".join(STACK_SPLITS),
    threads: 1
    resources:
        **job_resources("predict_charngram"),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/score_candidates.py"


rule list_alternatives:
    # A labeler that scores every path (charngram) lists its best few per row: extra candidates, so
    # the stack can take its runner-up where the other members' scores favour it.
    input:
        model=f"{RESULTS}/models/{{labeler}}",
        rows=lambda wildcards: rows_for_split(wildcards.split),
    output:
        f"{RESULTS}/predictions/{{labeler}}/{{split}}.alternatives.parquet",
    params:
        code=lambda wildcards: package_code("workflow:list_alternatives", labeler=wildcards.labeler),
        cfg=lambda wildcards: labeler_config(wildcards.labeler, "predict"),
        k=STACK["alternatives"],
    log:
        f"{RESULTS}/logs/list_alternatives/{{labeler}}.{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/list_alternatives/{{labeler}}.{{split}}.tsv"
    wildcard_constraints:
        labeler=CHARNGRAM_PATTERN,
        split="|".join(STACK_SPLITS),
    threads: 1
    resources:
        **job_resources("predict_charngram"),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/list_alternatives.py"


rule fit_stack:
    # The learned arbiter, fit on the members' validation predictions. Its validation output is
    # cross-fitted (each row scored by a model fit on the other folds); the saved model, fit on all
    # validation rows, scores the test split and new files.
    input:
        hierarchy=HIERARCHY,
        truth=rows_for_split("val"),
        train=rows_for_split("train"),  # its paths: the chance that a new row's is unseen
        predictions=lambda wildcards: ensemble_inputs(wildcards.ensemble, "val", wildcards.stage),
        scores=lambda wildcards: candidate_scores(wildcards.ensemble, "val"),
        alternatives=lambda wildcards: alternatives(config["ensemble"]["members"][wildcards.ensemble], "val"),
    output:
        model=f"{RESULTS}/ensemble/{{ensemble}}.{{stage}}.stack.json",
        val=f"{RESULTS}/predictions/{{ensemble}}_stack/val.{{stage}}.parquet",
    params:
        code=package_code("stack_cli:_cmd_stack_fit"),
        named=lambda wildcards, input: named_inputs(wildcards.ensemble, input.predictions),
        scores=lambda wildcards, input: scores_args(wildcards.ensemble, input.scores),
        alternatives=lambda wildcards, input: alternatives_args(wildcards.ensemble, input.alternatives),
        descriptions="--descriptions" if STACK["descriptions"] else "",
        options=stack_fit_options(),
    log:
        f"{RESULTS}/logs/fit_stack/{{ensemble}}.{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_stack/{{ensemble}}.{{stage}}.tsv"
    wildcard_constraints:
        ensemble="|".join(ENSEMBLES),
        stage="|".join(VOTE_STAGES),
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat stack-fit --hierarchy {input.hierarchy} --truth {input.truth} --train {input.train}"
        " --model {output.model} --out {output.val}"
        " {params.options} {params.descriptions} {params.scores} {params.alternatives} {params.named} > {log} 2>&1"


rule apply_stack:
    input:
        model=f"{RESULTS}/ensemble/{{ensemble}}.{{stage}}.stack.json",
        hierarchy=HIERARCHY,
        rows=rows_for_split("test"),
        predictions=lambda wildcards: ensemble_inputs(wildcards.ensemble, "test", wildcards.stage),
        scores=lambda wildcards: candidate_scores(wildcards.ensemble, "test"),
        alternatives=lambda wildcards: alternatives(config["ensemble"]["members"][wildcards.ensemble], "test"),
    output:
        predictions=f"{RESULTS}/predictions/{{ensemble}}_stack/test.{{stage}}.parquet",
        # every row's ranked candidates and their proposers: the review queue's
        candidates=f"{RESULTS}/predictions/{{ensemble}}_stack/test.{{stage}}.ranked.parquet",
    params:
        code=package_code("stack_cli:_cmd_stack_apply"),
        named=lambda wildcards, input: named_inputs(wildcards.ensemble, input.predictions),
        scores=lambda wildcards, input: scores_args(wildcards.ensemble, input.scores),
        alternatives=lambda wildcards, input: alternatives_args(wildcards.ensemble, input.alternatives),
    log:
        f"{RESULTS}/logs/apply_stack/{{ensemble}}.test.{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/apply_stack/{{ensemble}}.test.{{stage}}.tsv"
    wildcard_constraints:
        ensemble="|".join(ENSEMBLES),
        stage="|".join(VOTE_STAGES),
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat stack-apply --model {input.model} --hierarchy {input.hierarchy} --rows {input.rows}"
        " --out {output.predictions} --candidates {output.candidates}"
        " {params.scores} {params.alternatives} {params.named} > {log} 2>&1"


rule calibrate:
    # A labeler's or vote's confidence: isotonic regression of item correctness on its own score,
    # fit on validation (JSON), scaled by the chance that a row's path is seen in training (the
    # training paths' Good–Turing estimate), added to its validation and test predictions.
    input:
        truth=rows_for_split("val"),
        train=rows_for_split("train"),
        val=lambda wildcards: predictions(wildcards.model, "val", wildcards.stage),
        test=lambda wildcards: predictions(wildcards.model, "test", wildcards.stage),
    output:
        calibration=f"{RESULTS}/ensemble/calibration/{{model}}.{{stage}}.json",
        val=f"{RESULTS}/predictions/{{model}}/val.{{stage}}.confidence.parquet",
        test=f"{RESULTS}/predictions/{{model}}/test.{{stage}}.confidence.parquet",
    params:
        code=package_code("stack_cli:_cmd_calibrate"),
    log:
        f"{RESULTS}/logs/calibrate/{{model}}.{{stage}}.log",
    wildcard_constraints:
        model="|".join([*LABELERS, *ENSEMBLES]),
        stage="|".join(VOTE_STAGES),
    conda:
        "../envs/cpu.yaml"
    shell:
        "prodcat calibrate --truth {input.truth} --train {input.train} --fit {input.val}"
        " --calibration {output.calibration}"
        " {input.val}={output.val} {input.test}={output.test} > {log} 2>&1"


rule choose_submission:
    # ensemble.submit: auto → the ensemble and method of the best validation accuracy (stacks
    # cross-fitted); otherwise the configured ones. Read by the manifest and the report.
    input:
        stacks=[f"{RESULTS}/ensemble/{e}.{SUBMIT_STAGE}.stack.json" for e in ENSEMBLES],
    output:
        SUBMISSION,
    params:
        code=package_code("workflow:choose_submission"),
        ensembles=list(ENSEMBLES),
        ensemble={key: config["ensemble"][key] for key in ("members", "submit", "method")},
        stage=SUBMIT_STAGE,
    log:
        f"{RESULTS}/logs/choose_submission.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/choose_submission.py"


rule manifest:
    # What `prodcat predict` needs to label new files with this run's models, without retraining.
    # The manifest records the hierarchy, accuracy, stack and calibration paths as given here
    # (relative to RESULTS); the submitted ensemble and method come from choose_submission.
    input:
        submission=SUBMISSION,
        models=[f"{RESULTS}/models/{m}" for m in dict.fromkeys(m for ms in ENSEMBLES.values() for m in ms)],
        accuracy=f"{RESULTS}/ensemble/level_accuracy.{SUBMIT_STAGE}.json",
        hierarchy=HIERARCHY,
        stacks=[f"{RESULTS}/ensemble/{e}.{SUBMIT_STAGE}.stack.json" for e in ENSEMBLES],
        calibrations=[f"{RESULTS}/ensemble/calibration/{m}.{SUBMIT_STAGE}.json" for m in [*LABELERS, *ENSEMBLES]],
    output:
        f"{RESULTS}/manifest.json",
    params:
        code=package_code("workflow:manifest"),
        config={key: config[key] for key in ("labelers", "namer", "correction", "ensemble")},
        stage=SUBMIT_STAGE,
        ensembles=list(ENSEMBLES),
        calibrated=[*LABELERS, *ENSEMBLES],
    log:
        f"{RESULTS}/logs/manifest.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/manifest.py"


rule review_queue:
    # ensemble.review_below: the submitted model's test rows under that confidence, least confident
    # first, with their best candidates and who proposed them (the submission stays complete).
    input:
        unpack(review_inputs),
    output:
        f"{RESULTS}/submission/review.parquet",
    params:
        code=package_code("workflow:review_queue"),
        below=config["ensemble"].get("review_below"),
        ensembles={e: list(m) for e, m in ENSEMBLES.items()},
    log:
        f"{RESULTS}/logs/review_queue.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/review_queue.py"


rule predict_new:
    # snakemake --cores 2 results/new/NAME.predictions.parquet   labels data/new/NAME.parquet
    input:
        rows="data/new/{name}.parquet",
        manifest=f"{RESULTS}/manifest.json",
    output:
        f"{RESULTS}/new/{{name}}.predictions.parquet",
    params:
        code=package_code("cli:_cmd_predict"),
        results=lambda wildcards, input: os.path.dirname(input.manifest),
    log:
        f"{RESULTS}/logs/predict_new/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict_new/{{name}}.tsv"
    threads: config["threads"]["predict"]
    resources:
        gpu=1,
    conda:
        "../envs/gpu.yaml"
    shell:
        "prodcat predict --models {params.results} --input {input.rows} --out {output} > {log} 2>&1"

# Shared names and input functions. Config values reach rules through params (so that a change
# reruns exactly the rules that use it) and never directly through shell commands.

import importlib.util
import os
import shlex
import sys

from snakemake.settings.types import DeploymentMethod

# The workflow's own folder (the repository: Snakefile, rules/, src/), wherever Snakemake runs and
# whether this workflow is run or imported as a module by another one.
WORKFLOW_ROOT = os.path.dirname(os.path.abspath(workflow.current_basedir.get_path_or_uri(secret_free=True)))
# envs/*.yaml install the package from here (pip expands ${PRODCAT_WORKFLOW_ROOT}): Snakemake hands
# conda a copy of the env file under .snakemake/conda, against which `-e ..` would not resolve.
os.environ.update(PRODCAT_WORKFLOW_ROOT=WORKFLOW_ROOT)  # set here, never read: not an envvars input
# Shell rules call `prodcat`: a shell function (set by shell.prefix, in front of every command) that
# runs the package with the interpreter that runs Snakemake, so that neither an activated venv nor
# its bin on PATH is needed (a cluster job runs that interpreter too); under --sdm conda, with the
# python of the rule's env, which has the package installed. Not a params value: a new interpreter
# path would rerun every rule. (Braces doubled: Snakemake formats the prefix.)
USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PRODCAT = f"{'python' if USES_CONDA else shlex.quote(sys.executable)} -m prodcat"
shell.prefix(f'set -euo pipefail; prodcat() {{{{ {PRODCAT} "$@"; }}}}; ')

# A rule's params hold a hash of the package code its command can run (prodcat.code_version), so
# that a code change reruns exactly those rules and what follows. The module is loaded from this
# workflow's src/ by path: the interpreter that runs Snakemake need not have the package.
_spec = importlib.util.spec_from_file_location("prodcat_code_version", f"{WORKFLOW_ROOT}/src/prodcat/code_version.py")
_code_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_code_version)


# The Labeler classes each kind runs (prodcat.labelers.interface.labeler_for; tests/test_code_version.py checks).
LABELER_CLASSES = {
    "text": ["Seq2SeqLabeler"],
    "multimodal": ["MultimodalLabeler", "Seq2SeqLabeler"],
    "charngram": ["PathNaiveBayesLabeler"],
}


def package_code(entry, labeler=None):
    """The hash of the package code that entry ("module:function", e.g. "cli:_cmd_correct") runs.
    With a labeler: the code it runs for that labeler's kind only (the other kinds' Labeler classes
    are not followed), so editing labelers/charngram.py does not retrain the seq2seq labelers."""
    skip = []
    if labeler is not None:
        mine = LABELER_CLASSES[config["labelers"][labeler]["kind"]]
        skip = sorted(
            {f"labelers.interface:{c}" for classes in LABELER_CLASSES.values() for c in classes if c not in mine}
        )
    return _code_version.code_hash(f"{WORKFLOW_ROOT}/src/prodcat", entry, skip=skip)


RESULTS = config["results"]
# The label hierarchy (rules/data.smk, hierarchy): every path a correction, vote or stack may output.
HIERARCHY = f"{RESULTS}/data/hierarchy.json"
LABELERS = list(config["labelers"])
SEQ2SEQ = [name for name, cfg in config["labelers"].items() if cfg["kind"] != "charngram"]
CHARNGRAM = [name for name, cfg in config["labelers"].items() if cfg["kind"] == "charngram"]
# a pattern that matches no labeler when the list is empty
SEQ2SEQ_PATTERN = "|".join(SEQ2SEQ) or "(?!)"
CHARNGRAM_PATTERN = "|".join(CHARNGRAM) or "(?!)"
ENSEMBLES = config["ensemble"]["members"]
TINY = config["tiny"]["enabled"]
EVAL_SPLITS = ["val", "test"] if config["data"]["test_labels"] else ["val"]
# Table 1 stage name → correction method. SUBMIT_STAGE (correction.method's stage) is the one the
# submission files, the manifest (so `prodcat predict`) and the report's submission note use; the
# votes and stacks run at every stage of VOTE_STAGES.
CORRECTION_METHODS = {"corrected": "topdown", "joint": "joint"}
CORRECTED_STAGES = list(CORRECTION_METHODS)
# How the seq2seq labelers decode: "raw" (free generation, the paper) and, with
# decoding.constrained, also under the hierarchy (Table 1 stage "constrained").
DECODINGS = ["raw", "constrained"] if config["decoding"]["constrained"] else ["raw"]
CONSTRAINED_LABELERS = SEQ2SEQ if "constrained" in DECODINGS else []
# The stages every ensemble votes on: both corrections and, when the seq2seq labelers decode
# constrained, that too (charngram's raw output is already constrained).
VOTE_STAGES = CORRECTED_STAGES + (["constrained"] if "constrained" in DECODINGS else [])
# Every stage a prediction file can have (Table 1's stages), whatever the config runs.
STAGES = ["raw", *CORRECTED_STAGES, "constrained"]
SUBMIT_STAGE = {"topdown": "corrected", "joint": "joint"}[config["correction"]["method"]]
# Every ensemble is combined both ways: the hard vote (model = the ensemble's name, the paper) and
# the learned arbiter (model = NAME_stack); ensemble.method picks the one `prodcat predict`
# and the manifest use for ensemble.submit.
STACKED = {f"{ensemble}_stack": ensemble for ensemble in ENSEMBLES}
# ensemble.submit: auto chooses after the stacks are fit (choose_submission in rules/ensemble.smk); the manifest, the
# report and the figures read that file.
SUBMISSION = f"{RESULTS}/ensemble/submission.json"
# Models whose confidence the report shows (at SUBMIT_STAGE): every labeler, vote and stack.
CONFIDENCE_MODELS = [*LABELERS, *ENSEMBLES, *STACKED]


def review_inputs(wildcards):
    """What the review queue may need, for whichever ensemble and method choose_submission picks."""
    inputs = {"submission": SUBMISSION, "rows": rows_for_split("test")}
    for ensemble, members in ENSEMBLES.items():
        inputs[f"vote.{ensemble}"] = confidence_table(ensemble, "test")
        inputs[f"stack.{ensemble}"] = predictions(f"{ensemble}_stack", "test", SUBMIT_STAGE)
        inputs[f"ranked.{ensemble}"] = f"{RESULTS}/predictions/{ensemble}_stack/test.{SUBMIT_STAGE}.ranked.parquet"
        for member in members:
            inputs[f"member.{member}"] = predictions(member, "test", SUBMIT_STAGE)
    return inputs


def confidence_table(model, split):
    """A model's predictions with a calibrated confidence column: a stack writes its own; the
    labelers and votes get theirs from calibrate (rules/ensemble.smk)."""
    if model in STACKED:
        return predictions(model, split, SUBMIT_STAGE)
    return f"{RESULTS}/predictions/{model}/{split}.{SUBMIT_STAGE}.confidence.parquet"


def _check_config():
    for ensemble, members in config["ensemble"]["members"].items():
        for name in members:
            if name not in config["labelers"]:
                raise ValueError(
                    f"config: ensemble.members.{ensemble} names {name!r}, which is not under labelers ({', '.join(LABELERS)})"
                )
        if ensemble in config["labelers"]:
            raise ValueError(f"config: ensemble name {ensemble!r} is also a labeler name")
        if f"{ensemble}_stack" in config["labelers"] or f"{ensemble}_stack" in config["ensemble"]["members"]:
            raise ValueError(
                f"config: {ensemble}_stack names the stacked {ensemble!r}; it cannot name a labeler or ensemble too"
            )
    if config["ensemble"]["submit"] not in [*config["ensemble"]["members"], "auto"]:
        raise ValueError(f"config: ensemble.submit is {config['ensemble']['submit']!r}, not one of ensemble.members")
    known = config["tiny"] if TINY else config["base_models"]
    if config["namer"]["base"] not in known:
        raise ValueError(
            f"config: namer.base is {config['namer']['base']!r}, but {'tiny' if TINY else 'base_models'} has no such key"
        )
    for name, cfg in config["labelers"].items():
        if cfg["kind"] != "charngram" and cfg["base"] not in known:
            raise ValueError(
                f"config: labelers.{name}.base is {cfg['base']!r}, but "
                f"{'tiny' if TINY else 'base_models'} has no such key"
            )


_check_config()


wildcard_constraints:
    labeler="|".join(LABELERS),
    split="train|val|test",
    dataset="train|test",
    stage="|".join(STAGES),
    model="|".join([*ENSEMBLES, *STACKED, *LABELERS]),
    arch="|".join(sorted(set(config["base_models"]) | {k for k in config["tiny"] if k not in ("enabled", "seed")})),


def hub_model(name):
    """base_models.<name> as {"id", "revision"} (a hub model) or {"path"} (a local folder): a plain
    string is a local folder when such a directory exists, else a hub id at revision main."""
    value = config["base_models"][name]
    if isinstance(value, dict):
        return dict(value) if "path" in value else {"id": value["id"], "revision": value.get("revision", "main")}
    return {"path": value} if os.path.isdir(value) else {"id": value, "revision": "main"}


def base_model_dir(name):
    """Where every job reads base model `name`: the stand-in built in tiny mode, a
    downloaded hub model, or the user's own folder."""
    if TINY:
        return f"{RESULTS}/models/base/{name}"
    spec = hub_model(name)
    return spec["path"] if "path" in spec else f"{RESULTS}/models/hub/{name}"


def base_model(labeler):
    """The folder a labeler starts from."""
    return base_model_dir(config["labelers"][labeler]["base"])


def base_model_input(wildcards):
    return [base_model(wildcards.labeler)]


def tiny_model_inputs(wildcards):
    """What a stand-in is built from: the training rows (its tokenizer) and, for the Llama stand-in,
    the validation rows too, which its pretraining rows are checked against. Not the test rows: a
    new test file must not rebuild the models (pretraining rows are apart from it by construction)."""
    inputs = {"train": rows_for_split("train")}
    if wildcards.arch == "llama":
        inputs["val"] = rows_for_split("val")
    return inputs


def rows_for_split(split):
    return {
        "train": f"{RESULTS}/data/train.parquet",
        "val": f"{RESULTS}/data/val.parquet",
        "test": f"{RESULTS}/data/test.parquet",
    }[split]


def predictions(labeler, split, stage):
    # charngram decodes over the hierarchy by construction: its "constrained" output is its raw one
    if stage == "constrained" and labeler in CHARNGRAM:
        stage = "raw"
    return f"{RESULTS}/predictions/{labeler}/{split}.{stage}.parquet"


def final_outputs():
    outputs = [
        f"{RESULTS}/report/metrics.csv",
        f"{RESULTS}/report/efficiency.csv",
        f"{RESULTS}/report/item_accuracy.svg",
        f"{RESULTS}/manifest.json",
        f"{RESULTS}/report/calibration.csv",
    ]
    if config["ensemble"].get("review_below"):
        outputs.append(f"{RESULTS}/submission/review.parquet")
    outputs += expand(f"{RESULTS}/submission/{{model}}.predict", model=[*ENSEMBLES, *STACKED, *LABELERS])
    if uses_names() and config["data"]["true_names"]:
        outputs.append(f"{RESULTS}/report/names.csv")
    return outputs


def labeler_train_inputs(wildcards):
    cfg = config["labelers"][wildcards.labeler]
    inputs = {"train": rows_for_split("train"), "val": rows_for_split("val"), "base": base_model_input(wildcards)}
    if cfg.get("source") == "name":
        # training (and its early-stopping validation) reads teacher or student names, as configured
        which = cfg.get("train_names", "teacher")
        inputs["train_names"] = names_for_split("train", which)
        inputs["val_names"] = names_for_split("val", which)
    return inputs


def labeler_predict_inputs(wildcards):
    inputs = {"model": f"{RESULTS}/models/{wildcards.labeler}", "rows": rows_for_split(wildcards.split)}
    if "constrained" in DECODINGS:
        inputs["hierarchy"] = HIERARCHY
    if config["labelers"][wildcards.labeler].get("source") == "name":
        inputs["names"] = names_for_split(wildcards.split, "student")
    return inputs


def names_for_split(split, which):
    return f"{RESULTS}/names/{which}/{split}.parquet"


# Each split's teacher and student names are generated as this many shards (rules/names.smk).
NAMER_SHARDS = config["namer"]["shards"]


def name_shard(which, split, shard, suffix="parquet"):
    return f"{RESULTS}/names/{which}/shards/{split}.{shard}-of-{NAMER_SHARDS}.{suffix}"


def name_shards(which, split, suffix="parquet"):
    return [name_shard(which, split, shard, suffix) for shard in range(NAMER_SHARDS)]


def uses_names():
    return any(cfg.get("source") == "name" for cfg in config["labelers"].values())


def namer_base():
    return base_model_dir(config["namer"]["base"])


def namer_base_input(wildcards):
    return [namer_base()]


def ingest_inputs(wildcards):
    data = config["data"]
    inputs = {"features": data[f"{wildcards.dataset}_features"]}
    if data[f"{wildcards.dataset}_labels"]:
        inputs["labels"] = data[f"{wildcards.dataset}_labels"]
    return inputs


def table1_entries(split):
    """(MODEL:STAGE, path) for every row of Table 1 on one split: each labeler raw, corrected
    both ways and constrained, and every ensemble's vote and stack at each of VOTE_STAGES."""
    entries = [(f"{m}:raw", predictions(m, split, "raw")) for m in LABELERS]
    entries += [(f"{m}:{stage}", predictions(m, split, stage)) for stage in CORRECTED_STAGES for m in LABELERS]
    entries += [(f"{m}:constrained", predictions(m, split, "constrained")) for m in CONSTRAINED_LABELERS]
    entries += [(f"{e}:{stage}", predictions(e, split, stage)) for e in ENSEMBLES for stage in VOTE_STAGES]
    # validation rows of a stacked ensemble are cross-fitted (rules/ensemble.smk, fit_stack)
    entries += [(f"{s}:{stage}", predictions(s, split, stage)) for s in STACKED for stage in VOTE_STAGES]
    return entries


def ensemble_inputs(ensemble, split, stage):
    """The members' predictions that an ensemble combines, in the configured member order."""
    return [predictions(m, split, stage) for m in config["ensemble"]["members"][ensemble]]


def named_inputs(ensemble, paths):
    """NAME=PATH arguments for prodcat vote / stack-fit / stack-apply."""
    return " ".join(f"{name}={path}" for name, path in zip(config["ensemble"]["members"][ensemble], paths))


# The learned arbiter's settings; what it is fit on (validation) and applied to (test).
STACK = config["ensemble"]["stack"]
# ensemble.stack keys that are `prodcat stack-fit` options; those not configured take the CLI's
# defaults (prodcat.ensemble.stack.DEFAULT_PARAMS, their one copy: the schema names no default)
STACK_FIT_OPTIONS = {"folds": "--folds", "inner_folds": "--inner-folds", "seed": "--seed", "C": "--C"}


def stack_fit_options():
    """The configured stack-fit options, as command-line arguments."""
    values = {key: ",".join(str(c) for c in value) if key == "C" else value for key, value in STACK.items()}
    return " ".join(f"{flag} {values[key]}" for key, flag in STACK_FIT_OPTIONS.items() if key in values)


STACK_SPLITS = ["val", "test"]
ENSEMBLE_MEMBERS = [m for m in LABELERS if any(m in members for members in ENSEMBLES.values())]


def candidate_scoring_inputs(wildcards):
    """A labeler's model, the rows of one split and every path any ensemble member proposes for
    them at any combining stage (rules/ensemble.smk, score_candidates)."""
    cfg = config["labelers"][wildcards.labeler]
    inputs = {
        "model": f"{RESULTS}/models/{wildcards.labeler}",
        "hierarchy": HIERARCHY,
        "rows": rows_for_split(wildcards.split),
        "proposals": sorted(
            {predictions(m, wildcards.split, stage) for m in ENSEMBLE_MEMBERS for stage in VOTE_STAGES}
            | set(alternatives(ENSEMBLE_MEMBERS, wildcards.split))
        ),
    }
    if cfg.get("source") == "name":
        inputs["names"] = names_for_split(wildcards.split, "student")
    return inputs


def candidate_scores(ensemble, split):
    """Each member's scores of the candidate paths, when the stack rescores (ensemble.stack.rescore)."""
    if not STACK["rescore"]:
        return []
    return [f"{RESULTS}/predictions/{m}/{split}.candidates.parquet" for m in config["ensemble"]["members"][ensemble]]


def alternatives(members, split):
    """The ranked alternatives (extra stack candidates) of those members that list them: charngram,
    which scores every path (Labeler.lists_alternatives); none when ensemble.stack.alternatives is 0."""
    if not STACK["alternatives"]:
        return []
    return [f"{RESULTS}/predictions/{m}/{split}.alternatives.parquet" for m in members if m in CHARNGRAM]


def alternatives_args(ensemble, paths):
    """--alternatives NAME=PATH arguments for prodcat stack-fit / stack-apply."""
    members = [m for m in config["ensemble"]["members"][ensemble] if m in CHARNGRAM]
    return " ".join(f"--alternatives {m}={path}" for m, path in zip(members, paths))


def scores_args(ensemble, paths):
    """--scores NAME=PATH arguments for prodcat stack-fit / stack-apply."""
    return " ".join(f"--scores {name}={path}" for name, path in zip(config["ensemble"]["members"][ensemble], paths))


def ensemble_comparisons():
    """For the report: each ensemble and stage with its vote, its stack and, per member, the Table 1
    stage its prediction comes from (charngram's constrained output is its raw one)."""
    return [
        {
            "ensemble": e,
            "stacked": f"{e}_stack",
            "stage": stage,
            "members": {m: "raw" if (stage == "constrained" and m in CHARNGRAM) else stage for m in members},
        }
        for e, members in ENSEMBLES.items()
        for stage in VOTE_STAGES
    ]


# What the training rules profile (prodcat.runtime.profiling); top_operators only shapes Table 3, so a
# change of it reruns the report, not the training.
PROFILE_TRAINING = {key: config["profile"][key] for key in ("enabled", "skip_first", "warmup", "steps")}

# Table 2 covers every trained model: the labelers and, when a labeler reads names, the namer.
EFFICIENCY_MODELS = LABELERS + (["namer"] if uses_names() else [])
# the models trained with a transformers Trainer, whose loss curves the report plots
TRAINER_MODELS = [m for m in EFFICIENCY_MODELS if m not in CHARNGRAM]


def efficiency_files(model):
    """(prediction summary, training benchmark) of one model, for Table 2."""
    if model == "namer":
        return f"{RESULTS}/names/student/test.summary.json", f"{RESULTS}/benchmarks/train_namer.tsv"
    return f"{RESULTS}/predictions/{model}/test.raw.summary.json", f"{RESULTS}/benchmarks/train_labeler/{model}.tsv"


def labeler_config(labeler, task):
    """A labeler's settings without those of the other task (train vs predict), so that editing
    one reruns only the rules that read it."""
    drop = {
        "train": ("predict",),
        "predict": ("train", "train_names", "side_dim", "fusion", "retailer_dropout", "params"),
    }[task]
    return {key: value for key, value in config["labelers"][labeler].items() if key not in drop}


def voters(stage):
    """Every labeler that votes in some ensemble at this stage (their validation accuracy per level
    breaks ties)."""
    return ENSEMBLE_MEMBERS if stage in VOTE_STAGES else []


def job_resources(rule):
    """A rule's cluster job size from config resources.RULE: mem_mb, runtime (minutes) and, where
    set, gpu_model and slurm_partition (an empty one leaves the profile's default). A training
    rule's `gpus` is its `gpu` resource instead (training_gpus)."""
    return {key: value for key, value in config["resources"][rule].items() if value != "" and key != "gpus"}


def training_gpus(rule):
    """GPUs of a training job (config resources.RULE.gpus): its `gpu` resource, and as many
    data-parallel processes (prodcat.workflow, prodcat.runtime.distributed)."""
    return config["resources"][rule]["gpus"]

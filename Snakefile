# prodcat: label noisy receipt lines with supergroup → group → module → brand.
# The whole DAG is in rules/*.smk, one file per stage; logic lives in the prodcat package.
#   snakemake --cores 8 --resources gpu=1                      (default: sample data, tiny models)
#   snakemake --cores 8 --resources gpu=1 --configfile configs/paper.yaml
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/names.smk"
include: "rules/labelers.smk"
include: "rules/ensemble.smk"
include: "rules/report.smk"


# Trivial jobs, and downloads (compute nodes often have no internet), run where Snakemake runs.
localrules:
    all,
    test_rows,
    submission,
    manifest,
    download_model,


rule all:
    input:
        final_outputs(),
    default_target: True

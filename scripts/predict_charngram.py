"""Snakemake entry point: see prodcat.workflow.predict_charngram."""
from prodcat.workflow import predict_charngram

predict_charngram(snakemake)  # noqa: F821 (injected by Snakemake)

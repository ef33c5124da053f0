"""Snakemake entry point: see prodcat.workflow.predict_labeler."""

from prodcat.workflow import predict_labeler

predict_labeler(snakemake)  # noqa: F821 (injected by Snakemake)

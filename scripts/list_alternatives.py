"""Snakemake entry point: see prodcat.workflow.list_alternatives."""

from prodcat.workflow import list_alternatives

list_alternatives(snakemake)  # noqa: F821 (injected by Snakemake)

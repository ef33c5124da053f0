# Two commands for a newcomer: `make run` (the whole workflow on the bundled sample) and
# `make test`. Both create or reuse .venv with the pinned requirements first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-nodeps.txt pyproject.toml | cksum | cut -d' ' -f1)
SNAKEMAKE := $(VENV)/bin/snakemake

.PHONY: install run test lint fmt dag report sample slurm clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(SNAKEMAKE) --cores 8 --resources gpu=1

test: $(STAMP)
	$(PY) -m pytest -q -rs

PYTHON_CODE := src scripts tests bench

lint: $(STAMP)
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check Snakefile rules/
	$(VENV)/bin/ruff check $(PYTHON_CODE)
	$(VENV)/bin/ruff format --check $(PYTHON_CODE)

fmt: $(STAMP)
	$(VENV)/bin/snakefmt Snakefile rules/
	$(VENV)/bin/ruff check --fix $(PYTHON_CODE)
	$(VENV)/bin/ruff format $(PYTHON_CODE)

dag: $(STAMP)
	@command -v dot >/dev/null || { echo "make dag needs graphviz (apt-get install graphviz)" >&2; exit 1; }
	mkdir -p results
	$(SNAKEMAKE) --dag | dot -Tsvg > results/dag.svg
	$(SNAKEMAKE) --rulegraph | dot -Tsvg > results/rulegraph.svg

report: $(STAMP)
	$(SNAKEMAKE) --report results/report.html

slurm: $(STAMP)
	$(SNAKEMAKE) --workflow-profile profiles/slurm

sample: $(STAMP)
	$(VENV)/bin/prodcat make-sample --out data/sample
	$(VENV)/bin/prodcat make-sample --out .test/data --train 400 --test 100 --seed 7 --format jsonl --test-ids-from 0

clean:
	rm -rf results .test/results .snakemake

"""The synthetic sample generator: catalogue shape, reproducibility, the committed data, and that the
files it writes pass ingest in both layouts."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prodcat import LEVELS
from prodcat.data.io import ingest, read_table
from prodcat.data.target_text import format_target
from prodcat.standins import synthetic

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample"
TINY_DIR = ROOT / ".test" / "data"
# .test/data numbers its test rows from 0, as the competition's files do: the workflow test then
# shows that every step keys on (split, indoml_id), not on indoml_id alone.
TINY_ARGS = {"n_train": 400, "n_test": 100, "seed": 7, "fmt": "jsonl", "test_ids_from": 0}
PARQUET_FILES = ["names.parquet", "test.labels.parquet", "test.parquet", "train.parquet"]
JSONL_FILES = ["names.jsonl", "test.features", "test.labels", "train.features", "train.labels"]


@pytest.fixture(scope="module")
def catalogue():
    return synthetic.generate_catalogue(20241)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A fresh regeneration of data/sample (default arguments, Parquet)."""
    out = tmp_path_factory.mktemp("sample")
    synthetic.write_sample(out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A fresh regeneration of .test/data (JSON lines)."""
    out = tmp_path_factory.mktemp("tiny")
    synthetic.write_sample(out, **TINY_ARGS)
    return out


# ---- the catalogue ------------------------------------------------------------------------------
def test_catalogue_sizes(catalogue):
    sizes = {level: len(catalogue.labels(level)) for level in LEVELS}
    assert sizes["supergroup"] >= 8
    assert sizes["group"] >= 40
    assert sizes["module"] >= 80
    assert sizes["brand"] >= 300
    assert len(catalogue.retailers) == synthetic.N_RETAILERS


def test_catalogue_is_a_strict_tree_with_shared_brands(catalogue):
    parent = {}
    modules_of_brand = defaultdict(set)
    for supergroup, group, module, brand in catalogue.paths:
        assert parent.setdefault(("group", group), supergroup) == supergroup
        assert parent.setdefault(("module", module), group) == group
        modules_of_brand[brand].add(module)
    shared = [brand for brand, modules in modules_of_brand.items() if len(modules) > 1]
    assert len(shared) >= 20
    assert synthetic.CATCH_ALL_BRAND in modules_of_brand
    generic = [path for path in catalogue.paths if path[1] in synthetic.GENERIC_GROUPS]
    assert generic and all(path[3] == synthetic.CATCH_ALL_BRAND for path in generic)
    assert catalogue.hierarchy().n_paths == len(catalogue.paths)


def test_labels_fit_the_target_text(catalogue):
    for path in catalogue.paths:
        format_target(path)  # raises on " | " or a newline
        assert all(label == label.strip() and label for label in path)


def test_catalogue_depends_on_seed_only(catalogue):
    assert synthetic.generate_catalogue(20241) == catalogue
    assert synthetic.generate_catalogue(1).paths != catalogue.paths


# ---- reproducibility and the committed files -----------------------------------------------------
def test_regeneration_is_byte_identical(sample, tiny, tmp_path):
    synthetic.write_sample(tmp_path / "parquet")
    synthetic.write_sample(tmp_path / "jsonl", **TINY_ARGS)
    for name in PARQUET_FILES:
        assert (tmp_path / "parquet" / name).read_bytes() == (sample / name).read_bytes(), name
    for name in JSONL_FILES:
        assert (tmp_path / "jsonl" / name).read_bytes() == (tiny / name).read_bytes(), name


def test_committed_sample_equals_regeneration(sample):
    """Fails when the generator changed and data/sample was not rewritten
    (`prodcat make-sample --out data/sample`). Compares contents, not bytes, so that another
    pyarrow version writing a different footer does not fail it."""
    assert sorted(p.name for p in SAMPLE_DIR.iterdir() if not p.name.startswith(".")) == PARQUET_FILES
    for name in PARQUET_FILES:
        committed, fresh = pq.read_table(SAMPLE_DIR / name), pq.read_table(sample / name)
        assert committed.equals(fresh), f"data/sample/{name} is stale: regenerate it"


def test_committed_test_data_equals_regeneration(tiny):
    assert sorted(p.name for p in TINY_DIR.iterdir() if not p.name.startswith(".")) == JSONL_FILES
    for name in JSONL_FILES:
        assert (TINY_DIR / name).read_bytes() == (tiny / name).read_bytes(), f".test/data/{name} is stale"


def test_committed_sample_is_small():
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) < 3 * 2**20


# ---- the rows --------------------------------------------------------------------------------------
def test_parquet_sample_ingests(sample):
    train = ingest(sample / "train.parquet")
    assert len(train) == 5000 and all(level in train.columns for level in LEVELS)
    assert 0.01 <= train["price"].isna().mean() <= 0.04
    raw_price = read_table(sample / "train.parquet")["price"]
    quoted = raw_price.dropna().str.startswith('"')
    assert 0.05 <= quoted.mean() <= 0.15
    assert pq.read_schema(sample / "train.parquet").field("price").type == "string"
    test = ingest(sample / "test.parquet", sample / "test.labels.parquet")
    assert len(test) == 1000 and all(level in test.columns for level in LEVELS)


def test_jsonl_sample_ingests(tiny):
    train = ingest(tiny / "train.features", tiny / "train.labels")
    test = ingest(tiny / "test.features", tiny / "test.labels")
    assert (len(train), len(test)) == (400, 100)
    prices = [json.loads(line)["price"] for line in (tiny / "train.features").read_text().splitlines()]
    kinds = {type(price).__name__ for price in prices}
    assert kinds == {"float", "str", "NoneType"}
    assert train["price"].isna().sum() == prices.count(None)


def test_descriptions_look_like_receipt_lines(sample):
    rows = read_table(sample / "train.parquet")
    names = read_table(sample / "names.parquet").set_index("indoml_id")["name"]
    lengths = rows["description"].str.len()
    assert lengths.min() >= synthetic.MIN_DESCRIPTION and lengths.max() <= synthetic.MAX_DESCRIPTION
    assert 16 <= lengths.mean() <= 24
    assert (rows["description"] == rows["description"].str.strip()).all()
    # noisy: most lines differ from the product's full name, and most are shorter
    full = names.loc[rows["indoml_id"]].to_numpy()
    assert (rows["description"].to_numpy() != full).mean() > 0.8
    assert (lengths.to_numpy() < [len(name) for name in full]).mean() > 0.7


def test_products_repeat_and_train_is_sorted(sample):
    rows = read_table(sample / "train.parquet")
    names = read_table(sample / "names.parquet")
    train_names = names[names["split"] == "train"]["name"]
    assert train_names.nunique() < 0.5 * len(train_names)
    key = list(rows[[*LEVELS, "description", "indoml_id"]].itertuples(index=False, name=None))
    assert key == sorted(key)


def test_ids_and_test_labels_join_one_to_one(sample):
    train = read_table(sample / "train.parquet")
    test = read_table(sample / "test.parquet")
    labels = read_table(sample / "test.labels.parquet")
    names = read_table(sample / "names.parquet")
    assert list(test["indoml_id"]) == list(labels["indoml_id"])
    assert test["indoml_id"].is_unique
    assert not set(train["indoml_id"]) & set(test["indoml_id"])
    assert sorted(names["indoml_id"]) == sorted([*train["indoml_id"], *test["indoml_id"]])
    assert list(labels.columns) == ["indoml_id", *LEVELS]
    assert list(test.columns) == ["indoml_id", "description", "retailer", "price"]


def test_test_has_a_few_unseen_retailers(sample):
    train = read_table(sample / "train.parquet")
    test = read_table(sample / "test.parquet")
    unseen = ~test["retailer"].isin(set(train["retailer"]))
    assert 0.005 <= unseen.mean() <= 0.05
    assert 50 <= train["retailer"].nunique() <= synthetic.N_RETAILERS


def test_tiny_sample_test_ids_repeat_training_ids(tiny):
    train = ingest(tiny / "train.features", tiny / "train.labels")
    test = ingest(tiny / "test.features", tiny / "test.labels")
    assert test["indoml_id"].tolist() == list(range(100))
    assert len(set(test["indoml_id"]) & set(train["indoml_id"])) >= 50  # most test ids are training ids too
    names = read_table(tiny / "names.jsonl")
    assert names.groupby("split")["indoml_id"].nunique().to_dict() == {"test": 100, "train": 400}


def test_tiny_sample_repeats_its_paths(tiny):
    train = ingest(tiny / "train.features", tiny / "train.labels")
    counts = train.groupby(list(LEVELS)).size()
    assert counts[counts >= 2].sum() >= 0.7 * len(train)
    assert train["module"].nunique() >= 30


def test_write_sample_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        synthetic.write_sample(tmp_path, fmt="csv")
    with pytest.raises(ValueError, match="n_train"):
        synthetic.write_sample(tmp_path, n_train=0)
    assert not list(tmp_path.iterdir())

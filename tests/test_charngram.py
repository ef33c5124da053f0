import math

import numpy as np
import pandas as pd
import pytest
from sklearn.naive_bayes import MultinomialNB

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.labelers.charngram import CharNgramLabeler, hashed_char_ngrams, train_charngram
from prodcat.runtime.errors import InputError

# Paths whose descriptions carry a distinguishing brand substring and product word; "glenmoor"
# sits under two modules (brands are not a tree) and "receipt all" has no brand word at all.
PATHS = {
    ("dairy", "yoghurts", "yoghurt drinks", "glenmoor"): ("glnmr", "yog drink"),
    ("dairy", "yoghurts", "spoonable yoghurt", "glenmoor"): ("glnmr", "spoon pot"),
    ("dairy", "yoghurts", "spoonable yoghurt", "zestly"): ("zstly", "spoon pot"),
    ("dairy", "cheese", "hard cheese", "receipt all"): ("", "chedr block"),
    ("dairy", "cheese", "hard cheese", "crumbco"): ("crmbc", "chedr block"),
    ("snacks", "crisps", "potato crisps", "crunchco"): ("crnch", "ptato crsp"),
    ("snacks", "crisps", "potato crisps", "zestly"): ("zstly", "ptato crsp"),
    ("snacks", "nuts", "salted nuts", "nutfield"): ("ntfld", "peanut salt"),
}
PARAMS = {"hash_buckets": 2**16, "predict_batch_rows": 37, "dense_features": 50}


def _noisy(text: str, rng: np.random.Generator) -> str:
    chars = [c if c == " " or rng.random() > 0.06 else "qxzj"[rng.integers(4)] for c in text]
    extra = f" {rng.integers(1, 999)} {rng.choice(['g', 'ml', 'pk'])}" if rng.random() < 0.5 else ""
    return "".join(chars) + extra


def make_rows(n_per_path: int, seed: int, start_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    records = []
    for path, (brand, product) in PATHS.items():
        for _ in range(n_per_path):
            words = [brand, product] if rng.random() < 0.7 else [product, brand]
            records.append(
                {
                    "description": _noisy(" ".join(w for w in words if w), rng),
                    "retailer": f"shop{rng.integers(5)}",
                    "price": float(rng.choice([np.nan, 1.5, 3.0, 9.9])),
                    **dict(zip(LEVELS, path)),
                }
            )
    rows = pd.DataFrame(records).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    rows.insert(0, "indoml_id", np.arange(start_id, start_id + len(rows), dtype="int64"))
    return rows


@pytest.fixture(scope="module")
def data():
    train, test = make_rows(30, seed=1), make_rows(10, seed=2, start_id=10_000)
    hierarchy = Hierarchy.from_frame(train)
    return train, test, hierarchy, train_charngram(train, hierarchy, params=PARAMS, val_rows=test)


def _features(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.drop(columns=list(LEVELS))


def _valid(pred: pd.DataFrame, hierarchy: Hierarchy) -> bool:
    return set(pred[list(LEVELS)].itertuples(index=False, name=None)) <= hierarchy.path_set()


def test_word_bounded_ngrams_do_not_cross_spaces():
    counts = hashed_char_ngrams(["ab cd", "ab  CD", "abcd"], 3, 3, 2**20, word_bounded=True)
    assert counts[0].nnz == 4  # " ab", "ab ", " cd", "cd " but no "b c"
    assert (counts[0] != counts[1]).nnz == 0  # case and repeated spaces are normalized away
    assert counts[2].nnz == 4  # " ab", "abc", "bcd", "cd "
    assert hashed_char_ngrams(["b c"], 3, 3, 2**20).nnz == 3  # " b ", "b c", " c "


def test_learns_the_paths_and_predicts_only_valid_ones(data):
    train, test, hierarchy, labeler = data
    pred = labeler.predict(_features(test))
    assert list(pred.columns) == ["indoml_id", *LEVELS, "text", "parse_ok", "logprob", "margin"]
    assert pred["indoml_id"].tolist() == test["indoml_id"].tolist()
    assert pred["indoml_id"].dtype == np.int64
    assert _valid(pred, hierarchy)
    item = (pred[list(LEVELS)].to_numpy() == test[list(LEVELS)].to_numpy()).all(axis=1).mean()
    assert item >= 0.9
    assert labeler.metrics["item_accuracy"] == pytest.approx(item)
    # val_rows tuned alpha over the grid, and the labeler keeps the winner
    search = labeler.metrics["alpha_search"]
    assert len(search) == len(labeler.params["alpha_grid"]) and labeler.params["alpha"] == labeler.metrics["alpha"]
    assert search[f"{labeler.params['alpha']:g}"] == max(search.values())
    assert pred["parse_ok"].all()
    margins = pred["text"].str.removeprefix("margin=").astype(float)
    assert pred["text"].str.startswith("margin=").all() and (margins >= 0).all() and margins.median() > 1
    np.testing.assert_allclose(margins, pred["margin"], atol=0.006)  # the text rounds it


def test_scores_are_multinomial_naive_bayes_over_paths(data):
    train, test, hierarchy, labeler = data
    X = labeler.featurizer.transform(train)
    path_id = {p: i for i, p in enumerate(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))}
    y = [path_id[p] for p in train[list(LEVELS)].itertuples(index=False, name=None)]
    nb = MultinomialNB(alpha=labeler.params["alpha"]).fit(X, y)
    X_test = labeler.featurizer.transform(test)
    prior = labeler._scorer_parts()[4]
    np.testing.assert_allclose(labeler._scores(X_test) - prior, X_test @ nb.feature_log_prob_.T, rtol=1e-4, atol=1e-3)


def test_alternatives_are_the_k_best_paths_by_posterior_and_rank_one_is_the_prediction(data):
    _, test, hierarchy, labeler = data
    rows = _features(test)
    alternatives = labeler.alternatives(rows, 3)
    assert alternatives.columns.tolist() == ["indoml_id", "rank", *LEVELS, "logprob"]
    assert alternatives["rank"].tolist() == [1, 2, 3] * len(rows)
    assert (alternatives["indoml_id"].to_numpy() == np.repeat(rows["indoml_id"].to_numpy(), 3)).all()
    first = alternatives[alternatives["rank"] == 1].reset_index(drop=True)
    pred = labeler.predict(rows)
    pd.testing.assert_frame_equal(first[list(LEVELS)], pred[list(LEVELS)])
    np.testing.assert_allclose(first["logprob"], pred["logprob"], atol=1e-6)
    # each row's three are distinct paths of the hierarchy, with the log posteriors score_paths gives them, descending
    assert _valid(alternatives, hierarchy)
    assert (alternatives.groupby("indoml_id")[list(LEVELS)].apply(lambda g: len(g.drop_duplicates())) == 3).all()
    scored = labeler.score_paths(rows, alternatives[["indoml_id", *LEVELS]])
    np.testing.assert_allclose(scored["logprob"], alternatives["logprob"], atol=1e-4)
    assert (np.diff(alternatives["logprob"].to_numpy().reshape(-1, 3), axis=1) <= 1e-9).all()
    # more alternatives than paths: every path once; k < 1 is refused
    assert len(labeler.alternatives(rows.iloc[:2], 100)) == 2 * len(hierarchy.paths)
    with pytest.raises(ValueError, match="k must be"):
        labeler.alternatives(rows, 0)


def test_save_load_gives_identical_predictions(data, tmp_path):
    _, test, _, labeler = data
    labeler.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["charngram.json", "charngram.safetensors"]
    loaded = CharNgramLabeler.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict(_features(test)), labeler.predict(_features(test)))
    assert loaded.metrics == labeler.metrics and loaded.params == labeler.params
    assert loaded.n_parameters == labeler.n_parameters > labeler.counts.nnz


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(InputError):
        CharNgramLabeler.load(tmp_path)


def test_odd_rows_at_predict_time(data):
    _, _, hierarchy, labeler = data
    odd = pd.DataFrame(
        {
            "indoml_id": np.arange(7, dtype="int64"),
            "description": pd.Series(
                ["🥚🥚 glnmr", ".", "   ", "ÄÖÜ ß 中文 \ud800", "x" * 500, "zstly spoon pot", "123"], dtype=object
            ),  # object: Arrow strings cannot hold the lone surrogate
            "retailer": ["never-seen", "", "shop1", "shop2", "never-seen", "shop0", "shop3"],
            "price": [math.nan, None, "1.99", "n/a", -5.0, 1e9, 0.0],
        }
    )
    pred = labeler.predict(odd)
    assert len(pred) == 7 and _valid(pred, hierarchy) and pred["parse_ok"].all()
    assert pred.loc[5, "brand"] == "zestly" and pred.loc[5, "module"] == "spoonable yoghurt"
    assert labeler.predict(odd.iloc[:0])[list(LEVELS)].shape == (0, 4)


def test_training_is_deterministic(data):
    train, test, hierarchy, labeler = data
    again = train_charngram(train, hierarchy, params=PARAMS, val_rows=test)
    assert (again.counts != labeler.counts).nnz == 0 and again.params == labeler.params
    pd.testing.assert_frame_equal(again.predict(_features(test)), labeler.predict(_features(test)))


def _side_signal_rows(seed: int, signal: str) -> pd.DataFrame:
    """Two paths with the same descriptions, told apart only by retailer or only by price."""
    rng = np.random.default_rng(seed)
    paths = [("dairy", "cheese", "hard cheese", "crumbco"), ("dairy", "cheese", "hard cheese", "receipt all")]
    records = []
    for i in range(240):
        k = i % 2
        records.append(
            {
                "indoml_id": seed * 1000 + i,
                "description": _noisy("chedr block", rng),
                "retailer": f"shop{k}" if signal == "retailer" else f"shop{rng.integers(2)}",
                "price": [1.0, 20.0][k] * (1 + 0.1 * rng.random()) if signal == "price" else 5.0,
                **dict(zip(LEVELS, paths[k])),
            }
        )
    return pd.DataFrame(records)


@pytest.mark.parametrize("signal", ["retailer", "price"])
def test_use_retailer_and_use_price_switch_the_side_features(signal):
    train, test = _side_signal_rows(1, signal), _side_signal_rows(2, signal)
    hierarchy = Hierarchy.from_frame(train)
    accuracy = {}
    for use in (True, False):
        labeler = train_charngram(train, hierarchy, params={**PARAMS, f"use_{signal}": use})
        f = labeler.featurizer
        n_side = {"retailer": len(f.retailers), "price": f.n_features - f.n_text - len(f.retailers)}[signal]
        assert (n_side > 0) == use
        pred = labeler.predict(_features(test))
        accuracy[use] = (pred["brand"] == test["brand"]).mean()
    assert accuracy[True] >= 0.85
    assert accuracy[False] <= 0.7


def test_refuses_unknown_params_and_paths_outside_the_hierarchy(data):
    train, _, hierarchy, _ = data
    with pytest.raises(ValueError, match="unknown charngram params"):
        train_charngram(train, hierarchy, params={"epoch": 3})
    other = train.copy()
    other.loc[3, "brand"] = "nobody"
    with pytest.raises(InputError, match="not in the hierarchy"):
        train_charngram(other, hierarchy, params=PARAMS)

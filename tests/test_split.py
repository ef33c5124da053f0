import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.split import split_group_stratified, split_report


def big_rows(n_paths=60, seed=0):
    rng = np.random.default_rng(seed)
    records, i = [], 0
    for p in range(n_paths):
        size = int(rng.integers(1, 40))
        for _ in range(size):
            records.append({"indoml_id": i, "description": f"d{i}", "retailer": "r", "price": 1.0,
                            "supergroup": f"sg{p % 5}", "group": f"g{p % 11}", "module": f"m{p}", "brand": f"b{p % 17}"})
            i += 1
    # sorted by label, as the datathon's file is
    return pd.DataFrame(records).sort_values(list(LEVELS)).reset_index(drop=True)


def test_split_partitions_rows_and_keeps_every_val_label_in_train():
    rows = big_rows()
    train, val = split_group_stratified(rows, fraction=0.1, seed=1)
    assert len(train) + len(val) == len(rows)
    assert set(train.indoml_id).isdisjoint(val.indoml_id)
    assert set(train.indoml_id) | set(val.indoml_id) == set(rows.indoml_id)
    for level in LEVELS:
        assert set(val[level]) <= set(train[level])
    val_paths = set(val[list(LEVELS)].itertuples(index=False))
    assert val_paths <= set(train[list(LEVELS)].itertuples(index=False))
    report = split_report(train, val)
    assert all(v["val_labels_missing_from_train"] == 0 for v in report["levels"].values())
    assert 0.06 < report["val_fraction"] < 0.14


def test_singletons_stay_in_train_and_each_group_keeps_a_train_row():
    rows = big_rows()
    train, val = split_group_stratified(rows, fraction=0.5, seed=3)
    sizes = rows.groupby(list(LEVELS)).size()
    for path in sizes[sizes == 1].index:
        assert tuple(path) not in set(val[list(LEVELS)].itertuples(index=False, name=None))
    assert set(train.groupby(list(LEVELS)).size().index) == set(sizes.index)


def test_split_is_deterministic_and_shuffled():
    rows = big_rows()
    a_train, a_val = split_group_stratified(rows, 0.1, seed=7)
    b_train, b_val = split_group_stratified(rows, 0.1, seed=7)
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_val, b_val)
    c_train, _ = split_group_stratified(rows, 0.1, seed=8)
    assert a_train.indoml_id.tolist() != c_train.indoml_id.tolist()
    # shuffled: the training order is no longer the label-sorted input order
    assert a_train.indoml_id.tolist() != sorted(a_train.indoml_id.tolist())

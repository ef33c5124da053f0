import numpy as np
import pandas as pd
import pytest

from prodcat import LEVELS
from prodcat.data.split import split_group_stratified, split_report


def big_rows(n_paths=60, seed=0):
    rng = np.random.default_rng(seed)
    records, i = [], 0
    for p in range(n_paths):
        size = int(rng.integers(1, 40))
        for _ in range(size):
            records.append(
                {
                    "indoml_id": i,
                    "description": f"d{i}",
                    "retailer": "r",
                    "price": 1.0,
                    "supergroup": f"sg{p % 5}",
                    "group": f"g{p % 11}",
                    "module": f"m{p}",
                    "brand": f"b{p % 17}",
                }
            )
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


def test_the_split_does_not_depend_on_the_input_row_order():
    """issue 16: the same rows in another order give the same validation set (and training order)."""
    rows = big_rows()
    train, val = split_group_stratified(rows, 0.1, seed=5)
    for permutation_seed in (0, 1):
        reordered = rows.sample(frac=1.0, random_state=permutation_seed).reset_index(drop=True)
        assert reordered["indoml_id"].tolist() != rows["indoml_id"].tolist()
        other_train, other_val = split_group_stratified(reordered, 0.1, seed=5)
        pd.testing.assert_frame_equal(other_val, val)
        pd.testing.assert_frame_equal(other_train, train)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_fraction_outside_the_open_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        split_group_stratified(big_rows(5), fraction, seed=1)


def test_split_cli_writes_train_validation_and_report_together_or_not_at_all(tmp_path, capsys):
    """issue 16: a bad --val path used to leave train and report behind."""
    from prodcat.cli import main

    data = tmp_path / "rows.parquet"
    big_rows(8).to_parquet(data)
    (tmp_path / "a_file").write_text("x")
    train, report = tmp_path / "out" / "train.parquet", tmp_path / "out" / "report.json"
    status = main(
        [
            "split",
            "--data",
            str(data),
            "--train",
            str(train),
            "--val",
            str(tmp_path / "a_file" / "val.parquet"),
            "--report",
            str(report),
        ]
    )
    assert status == 2 and "a_file/val.parquet" in capsys.readouterr().err
    assert not train.exists() and not report.exists() and not list(tmp_path.rglob("*.tmp"))
    status = main(["split", "--data", str(data), "--train", str(train), "--val", str(train), "--report", str(report)])
    assert status == 2 and "different files" in capsys.readouterr().err and not train.exists()
    val = tmp_path / "out" / "val.parquet"
    assert main(["split", "--data", str(data), "--train", str(train), "--val", str(val), "--report", str(report)]) == 0
    assert train.exists() and val.exists() and report.exists()


@pytest.mark.parametrize(
    "argument, value",
    [
        ("--fraction", "0"),
        ("--fraction", "1"),
        ("--fraction", "nan"),
        ("--fraction", "-0.2"),
        ("--seed", "-1"),
        ("--seed", "1.5"),
    ],
)
def test_split_cli_refuses_bad_fraction_and_seed_with_exit_2(tmp_path, capsys, argument, value):
    from prodcat.cli import main

    data = tmp_path / "rows.parquet"
    big_rows(5).to_parquet(data)
    with pytest.raises(SystemExit) as info:
        main(
            [
                "split",
                "--data",
                str(data),
                "--train",
                str(tmp_path / "t.parquet"),
                "--val",
                str(tmp_path / "v.parquet"),
                argument,
                value,
            ]
        )
    assert info.value.code == 2 and f"argument {argument}" in capsys.readouterr().err
    assert not (tmp_path / "t.parquet").exists()

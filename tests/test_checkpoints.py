from prodcat.runtime.checkpoints import last_checkpoint_of_run, run_signature


def test_checkpoints_of_another_run_are_discarded(tmp_path):
    checkpoints = tmp_path / "ckpt"
    (checkpoints / "checkpoint-3").mkdir(parents=True)
    (checkpoints / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (checkpoints / "checkpoint-12").mkdir()
    (checkpoints / "checkpoint-12" / "trainer_state.json").write_text("{}")
    (checkpoints / "checkpoint-20").mkdir()  # killed while saving: no trainer state
    (checkpoints / "run_signature.txt").write_text("abc\n")
    assert last_checkpoint_of_run(checkpoints, "abc") == str(checkpoints / "checkpoint-12")
    assert last_checkpoint_of_run(checkpoints, "other") is None
    assert not (checkpoints / "checkpoint-12").exists()


def test_signature_changes_with_settings_and_data(tmp_path):
    import pandas as pd

    (tmp_path / "config.json").write_text("{}")
    frame = pd.DataFrame({"a": [1, 2]})
    base = run_signature({"lr": 1}, tmp_path, [frame])
    assert base == run_signature({"lr": 1}, tmp_path, [frame.copy()])
    assert base != run_signature({"lr": 2}, tmp_path, [frame])
    assert base != run_signature({"lr": 1}, tmp_path, [frame.assign(a=[1, 3])])

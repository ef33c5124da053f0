import json
from pathlib import Path

import pandas as pd
import pytest

from prodcat import LEVELS

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def labelled_rows() -> pd.DataFrame:
    """A small labelled table: 3 paths with several rows each, plus a singleton path."""
    paths = [
        ("dairy & eggs", "yoghurts", "yoghurt drinks", "glenmoor"),
        ("dairy & eggs", "yoghurts", "spoonable yoghurt", "glenmoor"),
        ("dairy & eggs", "cheese", "hard cheese", "receipt all"),
        ("snacks", "crisps", "potato crisps", "crunchco"),
    ]
    counts = [20, 11, 9, 1]
    records, i = [], 0
    for path, count in zip(paths, counts):
        for k in range(count):
            records.append({"indoml_id": 1000 + i, "description": f"{path[3][:4]} {path[2][:5]} {k}",
                            "retailer": f"shop{i % 3}", "price": 1.0 + k, **dict(zip(LEVELS, path))})
            i += 1
    return pd.DataFrame(records)

"""One error type for bad input, so the CLI can turn it into exit status 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, and where known the column and row (1-based) or, in a JSON
    document, the key, and what was expected."""

    def __init__(self, path, message: str, *, column: str | None = None, row=None, key: str | None = None):
        self.path = str(path)
        self.column = column
        self.row = row
        self.key = key
        where = [f"file {self.path}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        if key is not None:
            where.append(f"key {key}")
        super().__init__(f"{', '.join(where)}: {message}")


class UsageError(Exception):
    """A bad combination of command-line arguments (no file involved); the CLI exits with 2."""

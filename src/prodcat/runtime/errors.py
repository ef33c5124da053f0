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


# Writes that fail for lack of space or permission: said plainly, with the file and the errno.
WRITE_ERRNOS = ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG")


def errno_of(error: OSError) -> str | None:
    """The symbolic errno of an OSError; for one without errno (pyarrow's "Error writing bytes to
    file: No space left on device") the errno whose message its text contains."""
    import errno
    import os

    if error.errno:
        return errno.errorcode.get(error.errno, str(error.errno))
    text = str(error)
    for name in WRITE_ERRNOS:
        code = getattr(errno, name, None)
        if code is not None and os.strerror(code) in text:
            return name
    return None


class OutputError(Exception):
    """A file could not be written (disk full, quota, permission, read-only file system): names the
    file and the errno; the CLI exits with 2. Nothing half-written is left behind."""

    def __init__(self, path, error: OSError):
        self.path = str(path)
        self.errno = errno_of(error)
        reason = error.strerror or str(error)
        advice = {
            "ENOSPC": "free some space (or point results: at a bigger disk) and rerun",
            "EDQUOT": "free some of your quota and rerun",
            "EACCES": "make the folder writable for this user and rerun",
            "EPERM": "make the folder writable for this user and rerun",
            "EROFS": "the file system is read-only: write the results elsewhere",
        }.get(self.errno, "rerun when the cause is fixed")
        super().__init__(f"cannot write file {self.path}: {self.errno or 'error'} ({reason}); {advice}")


def load_error(path, what: str, error: Exception, *, rule: str | None = None) -> InputError:
    """An InputError for a model, checkpoint or table that exists but does not read back (cut short,
    overwritten): names the file, what was expected and what to do. Snakemake cannot notice a
    corrupt output, so the advice says how to make it again."""
    redo = (
        "rerun with " + " or ".join(f"`--forcerun {name}`" for name in rule.split(" or "))
        if rule
        else "rerun the rule that made it with `--forcerun RULE`"
    )
    return InputError(
        path,
        f"expected {what}, but it does not read back ({error}); the file is damaged "
        f"or cut short: {redo}, or delete it (or its folder) and rerun",
    )

"""Settings given over defaults: one merge, one error for an unknown key."""

from __future__ import annotations


def merge_params(defaults: dict, params: dict | None, what: str) -> dict:
    """`params` over `defaults` (a new dict); a key that `defaults` lacks is a ValueError naming
    `what` ("unknown {what} [keys]; known: ..."), so that a misspelt setting never goes unnoticed."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **params}

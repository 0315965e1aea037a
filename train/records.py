"""Values written to JSON records: finite numbers or null, never Infinity or NaN (which JSON does not have)."""

from __future__ import annotations

import math


def finite_or_none(value):
    """Recursively replace non-finite floats by None in dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value

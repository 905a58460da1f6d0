"""JSON merge patches (RFC 7396), shared by the device SDK and the server's twins."""

from __future__ import annotations

from typing import Any


def merge(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied, as RFC 7396 §2 defines it: an object patch sets its
    members (null removes one, an object merges into an object), anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result

"""The comparisons a twin is made of, over JSON merge patches (RFC 7396, `merge`, shared
with the device SDK): the patch that turns one document into another, and the delta (what
desired asks that reported does not say yet). Pure functions over JSON values."""

from __future__ import annotations

from typing import Any

from tether._merge_patch import merge

__all__ = ["delta", "difference", "leaves", "merge"]


def difference(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (null for what `new` no longer has)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = difference(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value or isinstance(value, dict):
            patch[key] = value
    return patch


def delta(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """The part of `desired` that `reported` does not match yet, key by key: what is pending,
    and what desired becomes when a twin clears the values that took effect."""
    pending: dict[str, Any] = {}
    for key, value in desired.items():
        said = reported.get(key)
        if isinstance(value, dict) and isinstance(said, dict):
            inner = delta(value, said)
            if inner:
                pending[key] = inner
        elif key not in reported or said != value:
            pending[key] = value
    return pending


def leaves(document: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of a document's values that are not objects (`a.b`)."""
    paths = []
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += leaves(value, path + ".")
        else:
            paths.append(path)
    return paths

"""What a telemetry field name and value may be, checked the same way by the SDK (when a value
is staged) and by the server (when a push arrives)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

FIELD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}$")
MAX_STRING = 1024
MAX_JSON = 4096


def field_problem(field: Any) -> str | None:
    if isinstance(field, str) and FIELD_NAME.match(field):
        return None
    return "a field name is 1 to 64 letters, digits or _.:/- (not starting with punctuation)"


def value_problem(value: Any) -> str | None:
    """Why `value` cannot be stored, or None if it can."""
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, str):
        return (
            None if len(value) <= MAX_STRING else f"strings may be at most {MAX_STRING} characters"
        )
    if isinstance(value, dict | list):
        try:
            size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
        except (TypeError, ValueError):
            return "JSON values must hold only JSON types and finite numbers"
        return None if size <= MAX_JSON else f"JSON values may be at most {MAX_JSON} bytes"
    return "a value must be a number, boolean, string, object or array"

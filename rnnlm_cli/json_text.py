"""Results as JSON text: one object a line, floats that JSON cannot hold written as words.

JSON has no infinity or NaN; Python's ``json`` writes them as bare ``Infinity``/``NaN``,
which strict readers (``jq``, most languages' parsers) refuse. A log-probability of a
word the n-gram mix cannot score is ``-inf``, a perplexity of nothing is NaN: they are
written ``"-inf"``/``"inf"`` and ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced: NaN by None, infinities by "inf"/"-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def json_line(value: Any) -> str:
    """``value`` as one line of strict JSON (no newline)."""
    return json.dumps(json_safe(value))

"""Figures of the reliability tests, for docs/RELIABILITY.md (`make reliability`).

A test calls `record(...)` once its assertions hold; the figures go to the JSON-lines file named by
MODELBUILDER_RELIABILITY_LOG, and nowhere when it is unset (a plain `make test`).
"""

from __future__ import annotations

import json
import os
from typing import Any


def record(case: str, trials: int, outcome: str, **figures: Any) -> None:
    path = os.environ.get("MODELBUILDER_RELIABILITY_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"case": case, "trials": trials, "outcome": outcome, "figures": figures},
                           default=str) + "\n")

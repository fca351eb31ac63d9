"""Reading a server-sent event stream as a browser's EventSource does (for the tests of /events)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    kind: str
    id: int | None
    data: Any


def events(response: httpx.Response) -> Iterator[Event]:
    """Each event of a `text/event-stream` response as it arrives; comments (keep-alives) are skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
            continue
        if "data" in fields:
            yield Event(fields.get("event", "message"), int(fields["id"]) if "id" in fields else None,
                        json.loads(fields["data"]))
        fields = {}

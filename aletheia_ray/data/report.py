"""Build report: every skipped or suspicious input, named by id, for summary.json and the console."""
from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any


class BuildReport:
    """Issues grouped by category (e.g. ``unknown_problem``); each names the offending id."""

    def __init__(self) -> None:
        self.issues: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.info: dict[str, Any] = {}

    def add(self, category: str, ident: str, message: str) -> None:
        self.issues[category].append({"id": ident, "message": message})

    def count(self, category: str) -> int:
        return len(self.issues.get(category, []))

    def ids(self, category: str) -> list[str]:
        return [i["id"] for i in self.issues.get(category, [])]

    def to_dict(self) -> dict[str, Any]:
        return {"issues": {k: v for k, v in sorted(self.issues.items())}, **self.info}

    def print_console(self, stream=None, show: int = 5) -> None:
        stream = stream or sys.stderr
        if not self.issues:
            print("testbed: no bad inputs", file=stream)
        for cat, items in sorted(self.issues.items()):
            ids = ", ".join(str(i["id"]) for i in items[:show])
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            print(f"testbed: {cat}: {len(items)} -- {ids}{more}; first: {items[0]['message']}", file=stream)

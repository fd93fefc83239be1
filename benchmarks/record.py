"""The JSON-lines record a long benchmark keeps of every figure it measured.

The file is named by a digest of the settings that make figures comparable, so a rerun with
the same settings reads what was measured and runs only what is missing (an interrupted run
resumes; more seeds add to earlier ones), while other settings start a record of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class JsonLinesRecord:
    """``directory/<name>-<digest of settings>.jsonl``: one JSON object a line, each with the
    settings it was measured under."""

    def __init__(self, directory: Path, name: str, settings: dict):
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        self.path = Path(directory) / f"{name}-{digest}.jsonl"
        self.settings = settings

    def lines(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def add(self, line: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps({**line, "settings": self.settings}) + "\n")

    def set_aside(self, drop) -> list[dict]:
        """Move the lines for which ``drop(line)`` holds to ``<record>.superseded.jsonl`` (kept,
        not overwritten: a fix's before and after stay comparable); the lines moved."""
        lines = self.lines()
        gone = [line for line in lines if drop(line)]
        if gone:
            with self.path.with_suffix(".superseded.jsonl").open("a") as file:
                file.writelines(json.dumps(line) + "\n" for line in gone)
            kept = self.path.with_suffix(".tmp")
            kept.write_text("".join(json.dumps(line) + "\n" for line in lines if not drop(line)))
            os.replace(kept, self.path)
        return gone

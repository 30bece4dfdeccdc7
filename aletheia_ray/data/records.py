"""The verifier-list record: one coding problem, 2-5 candidate programs, exactly one correct.

Field names follow the released Aletheia-Bench parquet layout so files round-trip unchanged.
Loaders and validation live in ``aletheia_ray.data.lists``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LETTERS = "ABCDE"
MIN_CANDIDATES, MAX_CANDIDATES = 2, 5


@dataclass
class VerifierList:
    idx: str
    query: str  # the problem statement
    candidates: list[str]  # candidate programs, in display order (A, B, ...)
    pass_rates: list[float]  # one per candidate, in [0, 1]; exactly one equals 1.0
    chosen_position: int  # 0-based index of the correct candidate
    chosen_answer: str  # its letter, LETTERS[chosen_position]
    language: str = "python"
    prompt_id: str = ""  # problem id (contamination checks group by it)
    generator: str = ""
    num_candidates: int = 0  # filled from len(candidates) when absent
    easy_hard: str = ""
    weak_strong: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # unknown columns, kept for round-trips

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        extra = row.pop("extra")
        row.update(extra)
        return row

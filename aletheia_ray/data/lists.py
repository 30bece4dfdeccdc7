"""Load, validate, save and permute verifier lists (Aletheia-Bench layout).

Formats by suffix: ``.jsonl`` / ``.jsonl.gz`` (one JSON object a line; blank lines skipped,
row numbers are line numbers) and ``.parquet`` (pyarrow; row numbers count from 1).

Errors: ``load_lists(path)`` stops at the first bad row with a ``DataError`` naming the file,
row number and idx. ``load_lists(path, on_error="collect")`` returns ``(good_lists, errors)``
instead, so a caller can report every bad row at once; it never drops a row without an error.

Normalisation (documented, not silent): an integer ``idx``/``prompt_id`` becomes a string,
a null optional text column (``easy_hard`` ...) becomes "", an absent ``num_candidates`` or
``language`` is filled (len(candidates) / "python"). Columns outside the layout go to ``extra``
and are written back by ``save_lists``.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import random
import tempfile
from itertools import combinations
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union, overload

from aletheia_ray.data.records import LETTERS, MAX_CANDIDATES, MIN_CANDIDATES, VerifierList

PathLike = Union[str, "os.PathLike[str]"]
REQUIRED_FIELDS = ("idx", "query", "candidates", "pass_rates", "chosen_position", "chosen_answer")
OPTIONAL_TEXT_FIELDS = ("prompt_id", "generator", "easy_hard", "weak_strong", "source")
_KNOWN = {f.name for f in dataclasses.fields(VerifierList)} - {"extra"}


class DataError(ValueError):
    """A verifier-list row or file is malformed; the message names file, row and idx."""


# ---------------------------------------------------------------------------- validation


def validate_list(row: Union[Mapping[str, Any], VerifierList], where: str = "") -> VerifierList:
    """Check one row (dict or record) and return it as a ``VerifierList``.

    ``where`` prefixes every message, e.g. ``"data.jsonl: row 7"``. Raises ``DataError`` for a
    missing field, a wrong type, not 2-5 candidates, ``len(pass_rates) != len(candidates)``, a
    pass rate outside [0, 1], not exactly one pass rate == 1.0, ``chosen_position`` /
    ``chosen_answer`` / ``num_candidates`` inconsistent with the candidates and pass rates.
    """
    data = row.to_row() if isinstance(row, VerifierList) else dict(row)
    idx = data.get("idx")
    prefix = f"{where} " if where else ""
    label = f"{prefix}(idx={idx!r})" if idx is not None else f"{prefix}(no idx)".strip()

    def fail(problem: str) -> DataError:
        return DataError(f"{label}: {problem}")

    missing = [k for k in REQUIRED_FIELDS if data.get(k) is None]
    if missing:
        raise fail(f"missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")

    idx = data["idx"]
    if isinstance(idx, bool) or not isinstance(idx, (str, int)) or str(idx) == "":
        raise fail(f"idx must be a non-empty string, got {idx!r}")
    if not isinstance(data["query"], str) or not data["query"].strip():
        raise fail("query must be a non-empty string")

    candidates = _as_list(data["candidates"])
    if candidates is None or not all(isinstance(c, str) for c in candidates):
        raise fail("candidates must be a list of strings")
    n = len(candidates)
    if not MIN_CANDIDATES <= n <= MAX_CANDIDATES:
        raise fail(f"has {n} candidates; a list needs {MIN_CANDIDATES}-{MAX_CANDIDATES}")
    for k, code in enumerate(candidates):
        if not code.strip():
            raise fail(f"candidate {LETTERS[k]} is empty")

    rates = _as_list(data["pass_rates"])
    if rates is None or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in rates):
        raise fail(f"pass_rates must be a list of numbers, got {data['pass_rates']!r}")
    rates = [float(r) for r in rates]
    if len(rates) != n:
        raise fail(f"has {len(rates)} pass_rates for {n} candidates")
    bad = [(LETTERS[k], r) for k, r in enumerate(rates) if not (math.isfinite(r) and 0.0 <= r <= 1.0)]
    if bad:
        raise fail(f"pass rate of candidate {bad[0][0]} is {bad[0][1]!r}, outside [0, 1]")
    perfect = [k for k, r in enumerate(rates) if r == 1.0]
    if len(perfect) != 1:
        shown = ", ".join(LETTERS[k] for k in perfect) or "none"
        raise fail(f"needs exactly one candidate with pass rate 1.0, found {len(perfect)} ({shown})")
    correct = perfect[0]

    position, answer = data["chosen_position"], data["chosen_answer"]
    if isinstance(position, bool) or not isinstance(position, int):
        raise fail(f"chosen_position must be an integer, got {position!r}")
    if position != correct:
        raise fail(f"chosen_position {position} but the candidate with pass rate 1.0 is at {correct}")
    if answer != LETTERS[correct]:
        raise fail(f"chosen_answer {answer!r} but the correct candidate is {LETTERS[correct]!r}")
    num = data.get("num_candidates")
    unset_in_record = isinstance(row, VerifierList) and num == 0  # the dataclass default
    if num is not None and not unset_in_record:
        if isinstance(num, bool) or not isinstance(num, int) or num != n:
            raise fail(f"num_candidates is {num!r} but there are {n} candidates")

    language = data.get("language") or "python"
    if not isinstance(language, str):
        raise fail(f"language must be a string, got {language!r}")
    texts = {}
    for key in OPTIONAL_TEXT_FIELDS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise fail(f"{key} must be a string, got {value!r}")
        texts[key] = "" if value is None else str(value)

    extra = {k: v for k, v in data.items() if k not in _KNOWN}  # to_row() flattened a record's extra
    return VerifierList(
        idx=str(idx), query=data["query"], candidates=list(candidates), pass_rates=rates,
        chosen_position=correct, chosen_answer=LETTERS[correct], language=language,
        num_candidates=n, extra=extra, **texts,
    )


def _as_list(value: Any) -> Optional[list]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays from pandas
        out = value.tolist()
        return out if isinstance(out, list) else None
    return None


# ---------------------------------------------------------------------------- load / save


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".jsonl.gz", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            return suffix
    raise DataError(f"{path}: unknown list file format (use .jsonl, .jsonl.gz or .parquet)")


def iter_rows(path: PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(row_number, raw_dict)`` from a JSONL(.gz) or parquet file, unvalidated."""
    path = Path(path)
    kind = _suffix(path)
    if not path.is_file():
        raise DataError(f"list file not found: {path}")
    if kind == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: not a readable parquet file: {e}") from None
        number = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        return
    opener = gzip.open if kind == ".jsonl.gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: row {number}: not valid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
                yield number, row
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None


@overload
def load_lists(path: PathLike, on_error: Literal["raise"] = "raise", *, allow_empty: bool = False
               ) -> list[VerifierList]: ...
@overload
def load_lists(path: PathLike, on_error: Literal["collect"], *, allow_empty: bool = False
               ) -> tuple[list[VerifierList], list[DataError]]: ...


def load_lists(path: PathLike, on_error: str = "raise", *, allow_empty: bool = False):
    """Read and validate every row; repeated idx values are errors too (scorers key by idx).

    A file without rows is an error unless ``allow_empty`` (e.g. a testbed split the data could
    not fill, written by ``save_lists`` as an empty JSONL or a zero-row parquet with the schema)."""
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    lists: list[VerifierList] = []
    errors: list[DataError] = []
    first_row: dict[str, int] = {}
    for number, row in iter_rows(path):
        try:
            lst = validate_list(row, where=f"{path}: row {number}")
            if lst.idx in first_row:
                raise DataError(f"{path}: row {number} (idx={lst.idx!r}): idx repeats row {first_row[lst.idx]}")
        except DataError as e:
            if on_error == "raise":
                raise
            errors.append(e)
            continue
        first_row[lst.idx] = number
        lists.append(lst)
    if not lists and not errors and not allow_empty:
        errors_or_raise = DataError(f"{path}: holds no rows")
        if on_error == "raise":
            raise errors_or_raise
        errors.append(errors_or_raise)
    return (lists, errors) if on_error == "collect" else lists


def save_lists(lists: Sequence[VerifierList], path: PathLike) -> Path:
    """Validate and write lists as JSONL(.gz) or parquet (by suffix), atomically."""
    path = Path(path)
    kind = _suffix(path)
    rows = [validate_list(lst, where=f"save {path}: item {k}").to_row() for k, lst in enumerate(lists)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if kind == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:  # zero rows: still the layout's columns, so readers see the schema
                table = pa.Table.from_pylist(rows) if rows else _empty_schema().empty_table()
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise DataError(f"save {path}: columns cannot form a parquet table ({e})") from None
            pq.write_table(table, tmp)
        else:
            opener = gzip.open if kind == ".jsonl.gz" else open
            with opener(tmp, "wt", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _empty_schema():  # the parquet schema of a zero-row list file: the layout columns
    import pyarrow as pa

    text = pa.string()
    return pa.schema([("idx", text), ("query", text), ("candidates", pa.list_(text)),
                      ("pass_rates", pa.list_(pa.float64())), ("chosen_position", pa.int64()),
                      ("chosen_answer", text), ("language", text), ("prompt_id", text), ("generator", text),
                      ("num_candidates", pa.int64()), ("easy_hard", text), ("weak_strong", text),
                      ("source", text)])


# ---------------------------------------------------------------------------- permutation, pairs

RandomSource = Union[random.Random, int, None, Any]  # Any: numpy.random.Generator


def permute_candidates(lst: VerifierList, perm: Optional[Sequence[int]] = None, *,
                       rng: RandomSource = None) -> VerifierList:
    """Reorder candidates: new position ``k`` shows old candidate ``perm[k]``.

    Without ``perm`` a uniform permutation is drawn from ``rng`` (``random.Random``, a numpy
    ``Generator``, or an int seed). pass_rates, chosen_position and chosen_answer follow the
    candidates; other fields and ``extra`` are copied unchanged (per-candidate columns in
    ``extra`` are not reordered: keep such data outside the record).
    """
    n = len(lst.candidates)
    if perm is None:
        perm = random_permutation(n, rng)
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(n)):
        raise ValueError(f"list idx={lst.idx!r}: {perm} is not a permutation of 0..{n - 1}")
    position = perm.index(lst.chosen_position)
    return dataclasses.replace(
        lst, candidates=[lst.candidates[p] for p in perm], pass_rates=[lst.pass_rates[p] for p in perm],
        chosen_position=position, chosen_answer=LETTERS[position], num_candidates=n, extra=dict(lst.extra),
    )


def random_permutation(n: int, rng: RandomSource = None) -> list[int]:
    perm = list(range(n))
    if rng is None or isinstance(rng, int):
        random.Random(rng).shuffle(perm)
    elif isinstance(rng, random.Random):
        rng.shuffle(perm)
    elif hasattr(rng, "permutation"):
        perm = [int(p) for p in rng.permutation(n)]
    else:
        raise TypeError(f"rng must be random.Random, a numpy Generator or an int seed, got {type(rng).__name__}")
    return perm


def all_pairs(lst: VerifierList, *, both_orders: bool = False) -> list[tuple[int, int]]:
    """Candidate index pairs (i, j), i < j; with ``both_orders`` also (j, i) after each."""
    pairs = list(combinations(range(len(lst.candidates)), 2))
    return [p for i, j in pairs for p in ((i, j), (j, i))] if both_orders else pairs


def pair_preference(lst: VerifierList, i: int, j: int) -> Optional[str]:
    """The correct pairwise verdict when i is shown as A and j as B: "A", "B", or None on a tie."""
    a, b = lst.pass_rates[i], lst.pass_rates[j]
    return None if a == b else ("A" if a > b else "B")

"""Build the Adv split from Heldout lists (``adversarial.mode: combined``; the default,
``per_modification``, is in ``per_modification.py``) and verify variants in the sandbox.

In combined mode each Adv list gets one positive transform (applied to every incorrect candidate) and one negative
transform (applied to the correct candidate); transforms are assigned round-robin over a seeded
shuffle, so every transform is used about equally often and pairings vary. The names applied per candidate are in
the ``adv_transforms`` column, the source list in ``heldout_idx``. A transform that raises on one
program (e.g. Python that does not parse) is reported, and one that changes nothing (no local to
rename) is counted; both are replaced by the next transform of the same polarity in the rotation; Python variants of programs that compiled must still compile.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Optional

from aletheia_ray.data.records import VerifierList
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult
from aletheia_ray.testbed.adversarial.registry import get_transform
from aletheia_ray.data.report import BuildReport


def _compiles(code: str, language: str) -> Optional[bool]:
    if language != "python":
        return None  # checked in the sandbox on the verification sample
    try:
        compile(code, "<candidate>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def _apply_one(code: str, language: str, rotation: list[str], start: int, seed_key: str,
               report: BuildReport, where: str) -> tuple[str, str]:
    for step in range(len(rotation)):
        name = rotation[(start + step) % len(rotation)]
        try:
            out = get_transform(name)(code, language, random.Random(f"{seed_key}:{name}"))
        except Exception as e:  # noqa: BLE001 - any transform failure is reported, then the next one tried
            report.add("adversarial_transform_failed", where, f"{name}: {type(e).__name__}: {e}")
            continue
        if out == code:  # nothing to change (e.g. no renamable local): not applicable here
            noop = report.info.setdefault("adversarial_not_applicable", {})
            noop[name] = noop.get(name, 0) + 1
            continue
        if _compiles(code, language) and not _compiles(out, language):
            report.add("adversarial_broke_compile", where, f"{name}: variant no longer compiles")
            continue
        return out, name
    raise RuntimeError(f"{where}: every adversarial transform failed on this program")


def make_adversarial(heldout: list[VerifierList], size: int, positive: list[str], negative: list[str],
                     seed: int, report: BuildReport) -> list[VerifierList]:
    for name in positive + negative:
        get_transform(name)  # unknown names fail early, listing the known ones
    rng = random.Random(f"{seed}:adv")
    source = sorted(heldout, key=lambda l: l.idx)
    rng.shuffle(source)
    pos_rot, neg_rot = list(positive), list(negative)
    rng.shuffle(pos_rot)
    rng.shuffle(neg_rot)
    out = []
    for n, lst in enumerate(source[:size]):
        applied, cands = [], []
        for k, (code, rate) in enumerate(zip(lst.candidates, lst.pass_rates)):
            # negatives shift by one every full cycle so positive/negative pairings vary too
            rot, start = (neg_rot, n + n // max(len(neg_rot), 1)) if rate >= 1.0 else (pos_rot, n)
            if not rot:
                cands.append(code)
                applied.append("none")
                continue
            new, name = _apply_one(code, lst.language, rot, start % len(rot), f"{seed}:adv:{lst.idx}:{k}",
                                   report, f"{lst.idx} candidate {k}")
            cands.append(new)
            applied.append(name)
        out.append(replace(lst, idx=f"adv-{n}", candidates=cands,
                           extra={**lst.extra, "heldout_idx": lst.idx, "adv_transforms": applied}))
    return out


def _verification_sample(adv: list[VerifierList], sample: int, per_transform: int, seed: int
                         ) -> tuple[list[tuple[VerifierList, int]], int]:
    """Programs to re-run: ``per_transform`` per (transform, language) present in ``adv`` (so a
    rarely drawn transform is never skipped), plus every modified program of ``sample`` random lists."""
    rng = random.Random(f"{seed}:adv-verify")
    strata: dict[tuple[str, str], list[tuple[VerifierList, int]]] = {}
    for lst in adv:
        for k, name in enumerate(lst.extra["adv_transforms"]):
            if name != "none":
                strata.setdefault((name, lst.language), []).append((lst, k))
    picked: dict[tuple[str, int], tuple[VerifierList, int]] = {}
    for key in sorted(strata):
        for lst, k in rng.sample(strata[key], min(per_transform, len(strata[key]))):
            picked[(lst.idx, k)] = (lst, k)
    chosen = rng.sample(adv, min(sample, len(adv)))
    for lst in chosen:  # its modified programs (an unmodified one, "none", would be compared with itself)
        for k, name in enumerate(lst.extra["adv_transforms"]):
            if name != "none":
                picked.setdefault((lst.idx, k), (lst, k))
    return list(picked.values()), len(chosen)


def verify_adversarial(adv: list[VerifierList], originals: dict[str, VerifierList], sample: int,
                       submission_for: Callable[[VerifierList, str, str], Submission],
                       run: Callable[[list[Submission]], list[SubmissionResult]], seed: int,
                       per_transform: int = 1) -> dict:
    """Run original and modified programs of a stratified sample (see ``_verification_sample``);
    they must agree exactly (pass rate, and compile error or not). Counts per transform/language."""
    meta, n_lists = _verification_sample(adv, sample, per_transform, seed)
    subs = []
    for lst, k in meta:
        before = originals[lst.extra["heldout_idx"]].candidates[k]
        subs.append(submission_for(lst, f"{lst.idx}-{k}-orig", before))
        subs.append(submission_for(lst, f"{lst.idx}-{k}-adv", lst.candidates[k]))
    results = run(subs)
    mismatches, infra = [], 0
    per: dict[str, dict[str, int]] = {}
    for m, (lst, k) in enumerate(meta):
        a, b = results[2 * m], results[2 * m + 1]
        name = lst.extra["adv_transforms"][k]
        counts = per.setdefault(f"{name}/{lst.language}", {"programs": 0, "same_pass_rate": 0, "infra_errors": 0})
        counts["programs"] += 1
        if a.pass_rate is None or b.pass_rate is None:
            infra += 1
            counts["infra_errors"] += 1
            continue
        same = a.pass_rate == b.pass_rate and (a.status == Status.CE) == (b.status == Status.CE)
        if same:
            counts["same_pass_rate"] += 1
        else:
            mismatches.append({"idx": lst.idx, "candidate": k, "transform": name,
                               "original": [a.status.value, a.pass_rate], "modified": [b.status.value, b.pass_rate]})
    return {"lists": n_lists, "programs": len(meta), "same_pass_rate": len(meta) - len(mismatches) - infra,
            "infra_errors": infra, "mismatches": mismatches, "per_transform": dict(sorted(per.items())),
            "transforms_checked": sorted({lst.extra["adv_transforms"][k] for lst, k in meta})}

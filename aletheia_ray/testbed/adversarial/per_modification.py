"""The Adv split as in the paper: every chosen modification applied to every Heldout list.

``adversarial.mode: per_modification`` (default) gives one Adv list per (modification, Heldout
list), so each modification can be scored on its own against the unmodified Heldout
(``aletheia-eval bias``). The authors' release code does the same (``src/rq4_datagen.py`` in
insait-institute/aletheia: each bias mapped over the whole Heldout set, a ``modification`` column,
the sets concatenated). Direction, as in ``registry.py``: a *positive* modification (a claim for
the program) goes on every incorrect candidate (``modified_candidates: rejected``, the authors'
``*_rejected`` names), a *negative* one on the correct candidate (``chosen``); the other
candidates stay as they are.

Columns added to the list layout: ``modification`` (transform name), ``polarity``
(positive|negative), ``modified_candidates`` (rejected|chosen), ``heldout_idx`` (the source list)
and ``adv_transforms`` (per candidate: the transform or ``none``; the sandbox verification reads
it). A transform that raises on a candidate, or breaks the compilation of Python that compiled,
is reported and leaves that candidate unchanged; a (modification, list) pair in which no target
candidate changed (e.g. nothing to rename) is not written, and counted per modification in
``summary.json`` (``adversarial.per_modification``). ``mode: combined`` keeps the older rotation
(``apply.make_adversarial``).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Optional

from aletheia_ray.data.records import VerifierList
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.adversarial.apply import _compiles, make_adversarial
from aletheia_ray.testbed.adversarial.registry import get_transform

TARGETS = {"positive": "rejected", "negative": "chosen"}  # polarity -> which candidates are modified


def _modify(code: str, language: str, name: str, seed_key: str, report: BuildReport, where: str) -> Optional[str]:
    """The modified program, or None when the transform failed or changed nothing."""
    try:
        out = get_transform(name)(code, language, random.Random(f"{seed_key}:{name}"))
    except Exception as e:  # noqa: BLE001 - any transform failure is reported; the candidate stays as is
        report.add("adversarial_transform_failed", where, f"{name}: {type(e).__name__}: {e}")
        return None
    if out == code:
        return None
    if _compiles(code, language) and not _compiles(out, language):
        report.add("adversarial_broke_compile", where, f"{name}: variant no longer compiles")
        return None
    return out


def heldout_sources(heldout: list[VerifierList], limit: Optional[int], seed: int) -> list[VerifierList]:
    """Every Heldout list (file order), or a seeded sample of ``limit``; the same lists for every
    modification, so the modifications are compared on the same lists."""
    if limit is None or limit >= len(heldout):
        return list(heldout)
    keep = sorted(heldout, key=lambda l: l.idx)
    random.Random(f"{seed}:adv-sources").shuffle(keep)
    chosen = {l.idx for l in keep[:limit]}
    return [l for l in heldout if l.idx in chosen]


def make_adversarial_per_modification(heldout: list[VerifierList], modifications: list[str], seed: int,
                                      report: BuildReport, limit: Optional[int] = None) -> list[VerifierList]:
    """One Adv list per (modification, Heldout list); ``idx`` ``adv-{n}`` in modification order,
    then Heldout order. Counts per modification go to ``report.info['adversarial']``."""
    transforms = [get_transform(name) for name in modifications]  # unknown names fail early
    sources = heldout_sources(heldout, limit, seed)
    out: list[VerifierList] = []
    counts: dict[str, dict] = {}
    for t in transforms:
        target = TARGETS[t.polarity]
        written = not_applicable = 0
        for lst in sources:
            applied, cands = [], []
            for k, (code, rate) in enumerate(zip(lst.candidates, lst.pass_rates)):
                is_target = (rate >= 1.0) == (target == "chosen")
                new = _modify(code, lst.language, t.name, f"{seed}:adv:{lst.idx}:{k}", report,
                              f"{lst.idx} candidate {k}") if is_target else None
                cands.append(code if new is None else new)
                applied.append("none" if new is None else t.name)
            if all(a == "none" for a in applied):
                not_applicable += 1
                continue
            out.append(replace(lst, idx=f"adv-{len(out)}", candidates=cands, extra={
                **lst.extra, "heldout_idx": lst.idx, "modification": t.name, "polarity": t.polarity,
                "modified_candidates": target, "adv_transforms": applied}))
            written += 1
        counts[t.name] = {"polarity": t.polarity, "modified_candidates": target, "lists": written,
                          "not_applicable": not_applicable}
    report.info["adversarial"] = {"mode": "per_modification", "heldout_lists_used": len(sources),
                                  "per_modification": counts}
    return out


def make_adv_split(heldout: list[VerifierList], adv_size: int, adv_cfg, seed: int,
                   report: BuildReport) -> list[VerifierList]:
    """The Adv split for ``adversarial.mode`` (``adv_cfg`` is the ``AdversarialConfig``)."""
    if adv_cfg.mode == "combined":
        report.info["adversarial"] = {"mode": "combined"}
        return make_adversarial(heldout, adv_size, adv_cfg.positive, adv_cfg.negative, seed, report)
    return make_adversarial_per_modification(heldout, list(adv_cfg.positive) + list(adv_cfg.negative), seed,
                                             report, adv_cfg.lists_per_modification)

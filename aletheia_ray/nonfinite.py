"""Non-finite updates (``learner.on_nonfinite``): a NaN/inf loss or gradient norm is never applied.

How an update is discarded, on every rank alike: DeepSpeed's ZeRO optimizer already treats a
non-finite global gradient norm as an overflow (ZeRO-2: ``DeepSpeedZeroOptimizer.step`` in
deepspeed/runtime/zero/stage_1_and_2.py; the norm and the overflow flag are all-reduced over the
data-parallel group, so all ranks decide alike): it zeroes the gradients, skips the optimizer step,
and the engine (``_take_model_step``) skips the lr scheduler and reports ``was_step_applied() ==
False``. A non-finite *loss* need not give non-finite gradients (a clamp, a NaN in a masked
branch), so the rank whose micro-batch loss is non-finite scales that backward by NaN
(``backward_scale``): its gradients, hence the reduced norm on every rank, are NaN, and DeepSpeed
discards the update everywhere. The driver then checks what each rank reports (``check``): the
ranks agree on whether the step was applied, and no non-finite update was applied.

``NonFiniteGuard`` (driver side, in ``LearnerGroup``) applies the policy: ``skip`` records
``actor/nonfinite_skipped`` and a running ``actor/nonfinite_skips_total`` (of this process) and goes
on, failing at the (``max_nonfinite_skips`` + 1)-th skipped update in a row (skipped updates leave
the weights as they were, so a run that keeps producing them makes no progress); ``stop`` fails at
the first, naming the step, the rank(s) and the quantity.

``FAULT_NAN_GRAD_ENV`` is a fault injection for tests only.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

log = logging.getLogger("aletheia_ray.nonfinite")

POLICIES = ("skip", "stop")
# FAULT INJECTION, tests only: "<rank>:<call>" makes that rank's <call>-th train_step (1-based) backward
# a NaN-scaled loss while reporting the finite loss: a finite loss with a non-finite gradient norm
FAULT_NAN_GRAD_ENV = "ALETHEIA_FAULT_NAN_GRAD"


class NonFiniteUpdateError(RuntimeError):
    """A non-finite update stopped the run (``learner.on_nonfinite=stop`` or the skip cap)."""


def backward_scale(loss: float, scale: float, *, rank: int, call: int) -> float:
    """The factor a micro-batch's loss is multiplied by before backward: ``scale``, or NaN when the
    loss is non-finite (or the test-only fault injection names this rank and call), so that
    DeepSpeed's overflow check discards the whole update on every rank."""
    if not math.isfinite(loss) or os.environ.get(FAULT_NAN_GRAD_ENV) == f"{rank}:{call}":
        return float("nan")
    return scale


def rank_report(*, loss_finite: bool, applied: bool, grad_norm: Optional[float]) -> dict[str, Any]:
    """What one rank says about its update (``LearnerRank.train_step``; grad_norm None: not computed)."""
    return {"loss_finite": bool(loss_finite), "applied": bool(applied),
            "grad_norm": None if grad_norm is None else float(grad_norm)}


class NonFiniteGuard:
    def __init__(self, policy: str = "skip", max_skips: Optional[int] = 5):
        if policy not in POLICIES:
            raise ValueError(f"learner.on_nonfinite must be one of {POLICIES}, got {policy!r}")
        if max_skips is not None and max_skips < 0:
            raise ValueError(f"learner.max_nonfinite_skips must be >= 0 or None, got {max_skips}")
        self.policy, self.max_skips = policy, max_skips
        self.consecutive = self.total = 0

    def check(self, reports: list[dict[str, Any]], where: str) -> dict[str, float]:
        """Metrics of one update from every rank's ``rank_report``; raises per the policy.
        ``where`` names the update in errors (e.g. "step 12 (learner update 14)")."""
        applied = [r["applied"] for r in reports]
        bad_loss = [rank for rank, r in enumerate(reports) if not r["loss_finite"]]
        bad_norm = [rank for rank, r in enumerate(reports)
                    if r["grad_norm"] is not None and not math.isfinite(r["grad_norm"])]
        nonfinite = bool(bad_loss or bad_norm) or not any(applied)
        if len(set(applied)) > 1:
            raise RuntimeError(f"{where}: learner ranks disagree on whether the optimizer step was applied "
                               f"(applied per rank: {applied}); the ZeRO shards are no longer consistent")
        if nonfinite and applied[0]:
            raise RuntimeError(f"{where}: a non-finite update was APPLIED (loss non-finite on ranks {bad_loss}, "
                               f"grad norm non-finite on ranks {bad_norm}): the weights are corrupt; "
                               "DeepSpeed's overflow check must be on (bf16.check_grad_overflow)")
        if not nonfinite:
            self.consecutive = 0
            return {"actor/nonfinite_skipped": 0.0, "actor/nonfinite_skips_total": float(self.total)}
        if bad_loss:
            what = f"loss on learner rank(s) {bad_loss}"
        else:  # the global norm is reduced over every rank's ZeRO partition: no single rank to name
            what = f"gradient norm (global, reduced over ranks 0..{len(reports) - 1}; every rank's loss was finite)"
        message = f"{where}: non-finite {what}; the update was not applied (weights unchanged)"
        if self.policy == "stop":
            raise NonFiniteUpdateError(f"{message} (learner.on_nonfinite=stop)")
        self.consecutive += 1
        self.total += 1
        if self.max_skips is not None and self.consecutive > self.max_skips:
            raise NonFiniteUpdateError(f"{message}; {self.consecutive} skipped updates in a row exceed "
                                       f"learner.max_nonfinite_skips={self.max_skips}")
        log.warning("%s: skipped (%d in a row, %d in total)", message, self.consecutive, self.total)
        return {"actor/nonfinite_skipped": 1.0, "actor/nonfinite_skips_total": float(self.total)}

"""DPO-Think end to end on real actors (the synthetic CPU task): a format-only cold start leaves the
policy at chance; its own samples (rollout pool, T = 1) scored with ListEM become preference pairs;
the reference actor scores them once; DPO on the learner group then takes held-out list_acc to
>= 0.8. Then the Appendix-E SFT baseline trains on the same pairs (``preference.pairs_path``).

Measured (seed 0, this machine) while choosing the settings, held-out accuracy of checkpoints every
10 steps (HF sampling at T 0.6), after a 30-step cold start at lr 3e-3:
- beta 0.1, lr 3e-3: collapses (parse rate 0 by step 30: chosen and rejected logprobs both fall);
- beta 0.5, lr 1e-3, 32 pairs/step: 0.55 0.58 0.61 0.58 0.09 0.75 0.58 0.89 (steps 10..80): noisy;
- beta 0.5, lr 2e-3, 64 pairs/step: 0.58 0.14 0.05 0.94 0.91 0.91 (steps 10..60): a dip while the
  chosen logprobs fall (likelihood displacement), then stable once they recover;
- beta 0.5, lr 2e-3, 128 pairs/step (chosen): 0.58 0.78 0.00 0.97 1.00 0.98; the run's own
  evaluation (vLLM, 128 held-out lists) 0.969.
Every miss is a malformed answer (accuracy == parse rate): the verdicts are right from step 10 on.
"""
from __future__ import annotations

import json
import math

import pytest

from aletheia_ray.config import load_config
from aletheia_ray.data.lists import save_lists
from aletheia_ray.testbed.dpo import build_dpo_pairs
from aletheia_ray.tracking import read_metrics
from aletheia_ray.train_config import TrainConfig
from e2e_helpers import SYNTHETIC_CONFIG, run_train_in_own_ray

pytestmark = pytest.mark.slow

STEPS, BETA, LR, COLD_LR = 60, 0.5, 2e-3, 3e-3
DATA = ["seed=0", "data.synthetic.num_lists=256", "preference.samples_per_list=8", "preference.pairs_per_list=2",
        "cold_start.steps=30", "cold_start.targets=random_letter", f"cold_start.lr={COLD_LR}",
        "trainer.save_steps=0", "evaluation.enabled=true", "evaluation.num_lists=128", "logging.wandb=disabled"]
DPO = [*DATA, "algorithm.loss=dpo", "algorithm.eps_low=null", "algorithm.eps_high=null", f"algorithm.beta={BETA}",
       f"learner.lr={LR}", "preference.pairs_per_step=128", f"trainer.total_steps={STEPS}"]


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_dpo_think_learns_the_synthetic_task_from_its_own_samples_then_the_sft_baseline(tmp_path):
    out = tmp_path / "dpo"
    run_train_in_own_ray(DPO, out, config=SYNTHETIC_CONFIG, timeout=900)
    s, rows = _summary(out), read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    start = s["preference/gen_reward/list_acc"] / s["preference/gen_reward/parse_rate"]
    print(f"DPO: samples' accuracy among parsed {start:.3f} (parse {s['preference/gen_reward/parse_rate']:.3f}); "
          f"{s['preference/pairs']} pairs; step 1 loss {rows[0]['actor/loss']:.4f}, last margins "
          f"{rows[-1]['rewards/margins']:.3f}; held-out list_acc {s['eval/list_acc']:.3f} "
          f"(parse {s['eval/parse_rate']:.3f}); {s['last5/timing_s/step']:.3f} s/step")
    assert 0.35 <= start <= 0.65, f"the cold-started policy should be at chance (0.5), got {start:.3f}"
    # the reference scored the pairs with the weights DPO starts from: step 1 sees pi == ref exactly
    assert rows[0]["actor/loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert rows[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-4) == rows[0]["rewards/margins"]
    assert rows[0]["actor/lr"] == pytest.approx(LR) and s["cold_start/actor/lr"] == pytest.approx(COLD_LR)
    assert min(r["rewards/accuracies"] for r in rows[-5:]) >= 0.9 and rows[-1]["rewards/margins"] > 1.0
    assert s["eval/random_baseline"] == pytest.approx(0.5)
    assert s["eval/list_acc"] >= 0.8, f"DPO should take held-out list_acc to >= 0.8, got {s['eval/list_acc']:.3f}"

    # the pairs file carries the precomputed reference logprobs; `aletheia-testbed dpo` on the samples
    # file the run wrote makes the same pairs
    pairs = [json.loads(line) for line in (out / "preference" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == s["preference/pairs"] and all(p["ref_chosen_logp"] < 0 > p["ref_rejected_logp"] for p in pairs)
    cfg = load_config(SYNTHETIC_CONFIG, ["output_dir=/tmp/unused", *DATA], schema=TrainConfig)
    lists = save_lists(cfg.data.task.read_items(cfg), tmp_path / "lists.jsonl")
    build_dpo_pairs(lists, out / "preference" / "samples.jsonl", tmp_path / "again.jsonl", pairs_per_list=2,
                    style="instruct", seed=0)
    again = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert again == [{k: v for k, v in p.items() if not k.startswith("ref_")} for p in pairs]

    # Appendix E: SFT on the distinct chosen responses of the same pairs (no generation, no reference)
    sft = tmp_path / "sft"
    run_train_in_own_ray([*DATA, "algorithm.loss=sft_chosen", "algorithm.eps_low=null", "algorithm.eps_high=null",
                          "algorithm.beta=null", f"preference.pairs_path={out / 'preference' / 'pairs.jsonl'}",
                          "preference.pairs_per_step=32", "learner.lr=1e-3", "trainer.total_steps=10"],
                         sft, config=SYNTHETIC_CONFIG, timeout=600)
    b, sft_rows = _summary(sft), read_metrics(sft)
    print(f"SFT baseline: {b['preference/train_units']} chosen responses; nll {sft_rows[0]['actor/nll']:.3f} -> "
          f"{sft_rows[-1]['actor/nll']:.3f}; held-out list_acc {b['eval/list_acc']:.3f}")
    assert "preference/gen_reward/list_acc" not in b and b["preference/pairs"] == len(pairs)
    assert b["preference/train_units"] == len({(p["list_idx"], p["chosen"]) for p in pairs})
    assert sft_rows[-1]["actor/nll"] < sft_rows[0]["actor/nll"]

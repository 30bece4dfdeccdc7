"""The offline loop (``algorithm.loss`` with ``offline_data``): DPO-Think and its SFT baseline.

    [cold start] -> preference.samples_per_list samples per list on the rollout pool (T = 1.0)
    -> ListEM (reward pool metrics; ``aletheia_ray.preference.make_pairs`` pairs them)
    -> reference logprobs of chosen and rejected, once, on the reference actor (then stopped)
    -> trainer.total_steps updates of preference.pairs_per_step pairs on the learner group
    -> [checkpoints] -> sync rollout -> [held-out evaluation]

Everything lands in ``<output_dir>/preference/``: ``samples.jsonl`` (the SAMPLE layout that
``aletheia-testbed dpo`` reads) and ``pairs.jsonl`` (PAIR rows with ``ref_chosen_logp`` /
``ref_rejected_logp``), which ``preference.pairs_path`` feeds to a later run without generating
again. DPO rows are (chosen, rejected) of each pair in turn: the algorithm's ``rows_per_unit`` (2)
keeps them together in every shard and micro-batch. Logprobs are taken at temperature 1 (TRL's).
``sft_chosen`` trains NLL on the distinct chosen responses of the same pairs (paper Appendix E).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import ray
import torch

from aletheia_ray.actors.controller import Trainer
from aletheia_ray.batch import TrainBatch, sequences_to_batch
from aletheia_ray.dynamic_sampling import ScoredRound, merge_round_metrics
from aletheia_ray.micro_batches import near_equal_bounds
from aletheia_ray.preference import (chosen_responses, has_reference_logprobs, load_pairs, make_pairs,
                                     write_jsonl)
from aletheia_ray.sampler import PromptSampler

log = logging.getLogger("aletheia_ray.actors.preference_trainer")
LISTS_PER_CALL = 64  # lists per generation call and pairs per reference call (progress granularity)


class PreferenceTrainer(Trainer):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.data_dir = self.out / "preference"
        self.row_of = {item.idx: row for row, item in enumerate(self.items)}  # list idx -> item row
        self.units: list = []  # pairs (dpo) | (list idx, response) (sft_chosen)
        self.resumed_sampler: dict | None = None  # the pair sampler's state in the checkpoint resumed from

    def restore_sampler(self, state: dict[str, Any]) -> None:
        self.resumed_sampler = state  # restored once prepare() knows the pairs

    # ------------------------------------------------------------------ data (once)

    def prepare(self) -> dict[str, Any]:
        p, start = self.cfg.preference, time.perf_counter()
        extra: dict[str, Any] = {}
        if self.resumed_sampler is not None:  # a checkpoint exists, so the pairs (with reference logprobs) do too
            pairs = load_pairs(self.data_dir / "pairs.jsonl", need_reference=self.algorithm.rows_per_unit == 2)
        elif p.pairs_path:
            pairs = load_pairs(p.pairs_path)
            extra["preference/pairs_path"] = p.pairs_path
        else:
            samples, gen_metrics = self._generate_samples()
            write_jsonl(samples, self.data_dir / "samples.jsonl")
            pairs, summary = make_pairs({item.idx: item for item in self.items}, samples,
                                        pairs_per_list=p.pairs_per_list, style=self.cfg.data.prompt_style,
                                        seed=self.cfg.seed)
            extra.update({f"preference/gen_{k}": v for k, v in gen_metrics.items()})
            extra.update({"preference/samples": summary["samples"],
                          "preference/lists_without_correct": len(summary["lists_without_correct"]),
                          "preference/lists_without_rejected": len(summary["lists_without_rejected"])})
        missing = [f"{p['idx']} (list {p['list_idx']})" for p in pairs if p["list_idx"] not in self.row_of]
        if missing:
            raise ValueError(f"{len(missing)} preference pairs name a list that is not a training item of data.kind="
                             f"{self.cfg.data.kind!r}; first: {missing[:3]}")
        if not pairs:
            raise ValueError("no preference pairs: no list had both a correct and an incorrect sample "
                             f"(preference.samples_per_list={p.samples_per_list}); see {self.data_dir / 'samples.jsonl'}")
        if self.algorithm.offline_data == "preference_pairs" and not has_reference_logprobs(pairs):
            self._score_with_reference(pairs)
        self.reference_group.shutdown()  # scored once: its memory goes back to the cluster
        self.reference, self.state.ref_synced_step = None, None  # checkpoints need no reference copy
        write_jsonl(pairs, self.data_dir / "pairs.jsonl")
        self.units = pairs if self.algorithm.offline_data == "preference_pairs" else chosen_responses(pairs)
        self.sampler = PromptSampler(len(self.units), p.pairs_per_step, seed=self.cfg.seed + 2,
                                     shuffle=self.cfg.data.shuffle)
        if self.resumed_sampler is not None:
            self.sampler.load_state_dict(self.resumed_sampler)
        extra.update({"preference/pairs": len(pairs), "preference/train_units": len(self.units),
                      "timing_s/preference_data": time.perf_counter() - start})
        log.warning("preference data: %d pairs (%d training units) in %s", len(pairs), len(self.units), self.data_dir)
        return extra

    def _progress(self, what: str, done: int, total: int) -> None:
        if self.cfg.logging.progress:
            print(f"preference data: {what} {done}/{total}", file=sys.stderr, flush=True)

    def _generate_samples(self) -> tuple[list[dict], dict[str, float]]:
        """SAMPLE rows: preference.samples_per_list per training list from the current policy."""
        p, n = self.cfg.preference, len(self.items)
        samples, rounds, model = [], [], Path(self.model_path).name
        for part, (start, end) in enumerate(near_equal_bounds(n, -(-n // LISTS_PER_CALL))):
            rows = list(range(start, end))
            gens = self.rollout.generate([self.prompt_ids[i] for i in rows], n=p.samples_per_list,
                                         temperature=p.temperature, top_p=p.top_p,
                                         max_new_tokens=self.cfg.rollout.max_new_tokens,
                                         seed=self.cfg.seed * 1_000_003 + 10_000 + part)
            local = [self.reward_items[rows[g.prompt_index]] for g in gens]
            rounds.append(ScoredRound(gens, self.rewards.score(gens, local), 0.0))
            samples += [{"idx": self.items[rows[g.prompt_index]].idx, "model": model, "completion": g.text}
                        for g in gens]
            self._progress("generated lists", end, n)
        # reward/* over every sample of every call, recomputed from each sample's scored reward
        return samples, {k: v for k, v in merge_round_metrics(rounds).items() if k.startswith("reward/")}

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def _pair_batch(self, pairs: Sequence[dict]) -> TrainBatch:
        """Rows chosen_0, rejected_0, chosen_1, ...; reference sums attached when the pairs have them."""
        prompts = [self.prompt_ids[self.row_of[p["list_idx"]]] for p in pairs for _ in (0, 1)]
        responses = [self._tokens(p[key]) for p in pairs for key in ("chosen", "rejected")]
        batch = sequences_to_batch(prompts, responses, pad_id=self.pad_id)
        if has_reference_logprobs(pairs):
            batch.ref_sequence_logprobs = torch.tensor(
                [p[key] for p in pairs for key in ("ref_chosen_logp", "ref_rejected_logp")], dtype=torch.float32)
        return batch

    def _score_with_reference(self, pairs: list[dict]) -> None:
        """The reference (the policy DPO starts from) sums its logprobs over each response, once."""
        # the cold start (if any) already made the reference the cold-started policy (Trainer.cold_start)
        bounds = near_equal_bounds(len(pairs), -(-len(pairs) // LISTS_PER_CALL))
        for start, end in bounds:
            part = pairs[start:end]
            batch = self._pair_batch(part)
            logprobs = ray.get(self.reference.compute_logprobs.remote(batch, 1.0, "response"))
            sums = (logprobs * batch.loss_mask).sum(-1).tolist()
            for k, pair in enumerate(part):
                pair["ref_chosen_logp"], pair["ref_rejected_logp"] = sums[2 * k], sums[2 * k + 1]
            self._progress("reference-scored pairs", end, len(pairs))

    # ------------------------------------------------------------------ training

    def _unit_batch(self, units: Sequence) -> TrainBatch:
        if self.algorithm.offline_data == "preference_pairs":
            return self._pair_batch(units)
        return sequences_to_batch([self.prompt_ids[self.row_of[idx]] for idx, _ in units],
                                  [self._tokens(text) for _, text in units], pad_id=self.pad_id)

    def rl_step(self, step: int) -> dict[str, Any]:
        """One optimizer step on the next preference.pairs_per_step units (named as the RL step for the loop)."""
        start = time.perf_counter()
        units = [self.units[i] for i in self.sampler.next_batch()]
        batch = self._unit_batch(units)
        actor = self.learner.train_step(batch, self.algorithm, self.algorithm.loss_settings(self.cfg.algorithm.settings))
        self.state.updates += 1
        metrics = {k.replace("actor/rewards/", "rewards/"): v for k, v in actor.items()}  # TRL's names
        seconds = time.perf_counter() - start
        tokens = int(batch.attention_mask.sum())
        metrics.update({"timing_s/update": seconds, "timing_s/step": seconds, "perf/throughput": tokens / seconds,
                        "perf/total_num_tokens": tokens, "epoch": self.sampler.epoch,
                        "train/updates": float(self.state.updates)})
        metrics.update(self.memory_poll.collect())
        return metrics

    def evaluate(self) -> dict[str, float]:
        self.rollout_weights.sync()  # the engines still hold the starting policy (a dead one is replaced first)
        return super().evaluate()

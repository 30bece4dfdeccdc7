"""THE controller loop: the only place that knows the order of a training step.

    [cold start: SFT on formatted verdicts -> sync rollout -> reference := cold-started policy]
    per step: sample prompts -> generate -> reward -> [sample filter] -> advantages
              -> reference logprobs (overlapping old logprobs) -> update(s) -> sync
              -> [reference re-sync] -> log -> [checkpoint]

What the step trains on comes from the task (``cfg.data.task``: items, prompts, scorer, cold-start
targets, held-out set) and how from the algorithm's registry entry (``cfg.algorithm.entry``: loss,
settings, advantage estimator, sample filter, reference and old-logprob needs).

The sync mode (``aletheia_ray/sync/modes.py``) only changes three things here: how many updates a
generated batch feeds (batch_online: mini-batches of whole prompt groups), whether the next
step's generation starts before this step's update (async_tis: it overlaps, from weights one
update behind, and the loss gets TIS weights), and so what a checkpoint must hold.

It maps the config onto the actors' keyword arguments and never reaches into an actor's
internals. Resume restores learner (DeepSpeed), rollout weights (HF export), reference weights,
the prompt sampler and RNG states, so steps k+1..N repeat an uninterrupted run exactly.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import ray
from transformers import AutoTokenizer

from aletheia_ray.actors.cluster import ray_session
from aletheia_ray.actors.colocation import Colocation, role_layouts
from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.actors.memory_poll import PeakMemoryPoll
from aletheia_ray.actors.learner import LearnerGroup, learner_bundles
from aletheia_ray.actors.reference import ReferenceActor
from aletheia_ray.actors.reward import RewardPool
from aletheia_ray.actors.rollout import RolloutPool
from aletheia_ray.actors.rollout_weights import RolloutWeights
from aletheia_ray.actors.weight_sync.transports import WeightSync
from aletheia_ray import checkpoint as ckpt
from aletheia_ray.algorithms.advantages import ADVANTAGE_ESTIMATORS
from aletheia_ray.batch import generations_to_batch, sequences_to_batch
from aletheia_ray.config import config_to_dict, dump_config
from aletheia_ray.eval_schedule import BestCheckpoint, best_step, eval_due
from aletheia_ray.dynamic_sampling import ScoredRound, fill_batch, round_key
from aletheia_ray.metrics import logprob_gap_metrics, mean_update_metrics, response_metrics
from aletheia_ray.micro_batches import minibatch_rows
from aletheia_ray.models import resolve_model_path
from aletheia_ray.rollout_schedule import RolloutSchedule
from aletheia_ray.sampler import PromptSampler
from aletheia_ray.threads import thread_budget
from aletheia_ray.tracking import StageTimer, Tracker
from aletheia_ray.train_config import TrainConfig

log = logging.getLogger("aletheia_ray.actors.controller")


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.sync_policy = cfg.sync_policy
        self.algorithm, self.task = cfg.algorithm.entry, cfg.data.task
        self.reward_fn = self.task.reward_fn(cfg)
        self.model_path = resolve_model_path(cfg.model.path, cfg.model.cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        data = self.task.load(cfg, self.tokenizer)
        self.items, self.prompt_ids, self.reward_items, self.data_report = (data.items, data.prompt_ids,
                                                                            data.reward_items, data.report)
        lengths = sorted(len(ids) for ids in self.prompt_ids)
        log.warning("training %s: %d of %d kept (dropped: %d by data.num_candidates, %d by data.max_prompt_tokens);"
                    " prompt tokens median %d, max %d", self.task.item_noun,
                    self.data_report["data/num_lists"],
                    self.data_report["data/num_lists_read"], self.data_report["data/dropped_num_candidates"],
                    self.data_report["data/dropped_prompt_tokens"], lengths[len(lengths) // 2], lengths[-1])
        self.sampler = PromptSampler(len(self.items), cfg.algorithm.prompts_per_step, seed=cfg.seed,
                                     shuffle=cfg.data.shuffle)
        self.state = ckpt.ControllerState(step=0, sampler=self.sampler.state_dict())
        self.schedule = RolloutSchedule(self._generate, self.sampler, max_staleness=self.sync_policy.max_staleness,
                                        total_steps=cfg.trainer.total_steps)
        self.reference_group = ActorGroup("reference")  # the reference actor (created in start, if used)
        self.colocation = None  # colocate.enabled: the placement group every GPU role shares (start)
        self.learner_placement = None  # otherwise: the learner ranks' placement group, reserved first (start)
        self.heldout = None  # the task's held-out items, loaded at the first evaluation
        self.learner = self.rollout = self.reference = self.rewards = self.sandbox = self.rollout_weights = None
        self.memory_poll = PeakMemoryPoll(self._memory_actors)

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        """Create every actor (rollout and learner start concurrently) and restore a checkpoint."""
        cfg = self.cfg
        resume_dir = ckpt.latest_checkpoint(self.out) if cfg.trainer.resume else None
        if cfg.trainer.resume:
            removed = ckpt.remove_incomplete(self.out)
            if removed:
                log.warning("removed incomplete checkpoints (interrupted saves): %s", [str(p) for p in removed])
            if resume_dir is None:
                log.warning("trainer.resume=true but %s has no complete checkpoint: starting from step 0", self.out)
        stale = self.out / ckpt.CHECKPOINTS
        if not cfg.trainer.resume and stale.exists():
            log.warning("trainer.resume=false: removing checkpoints of an earlier run in %s", stale)
            shutil.rmtree(stale)
        if resume_dir is not None:
            self.state = ckpt.load_controller_state(resume_dir)
            self.restore_sampler(self.state.sampler)
            ckpt.restore_rng_state(self.state.rng)
            # the engines restart from the learner's export; async_tis reuses the generated next batch
            self.schedule.restore(ckpt.load_pending_rollout(resume_dir), weights_version=self.state.updates)
            log.warning("resuming from %s (step %d)", resume_dir, self.state.step)
        rollout_model = str(resume_dir / "hf") if resume_dir is not None else self.model_path
        self.ref_model = self.model_path
        if resume_dir is not None and self.state.ref_synced_step is not None:
            self.ref_model = str(resume_dir / "reference")
        dump_config(cfg, self.out / "config.yaml")

        r, l = cfg.rollout, cfg.learner
        if cfg.colocate.enabled:  # one placement group, one bundle per GPU (actors/colocation.py)
            self.colocation = Colocation(cfg.colocated_plan())
            self.reference_group = self.colocation.reference_group()
        rollout_at, learner_at, reference_at = role_layouts(cfg, self.colocation)
        if self.colocation is None:  # the learner's group before the engines': a PACK learner gets whole nodes
            self.learner_placement = ActorGroup("learner", learner_bundles(l.num_ranks, l.num_cpus_per_rank,
                                                                           l.num_gpus_per_rank), l.placement_strategy)
            learner_at["placement_group"] = self.learner_placement.placement_group
        with ThreadPoolExecutor(2) as pool:
            rollout_f = pool.submit(RolloutPool, r.num_engines, rollout_model, **rollout_at,
                                    tensor_parallel_size=r.tensor_parallel_size, dtype=cfg.model.dtype,
                                    max_model_len=cfg.model.max_model_len, kv_cache_gb=r.kv_cache_gb,
                                    enforce_eager=r.enforce_eager, seed=cfg.seed,
                                    engine_kwargs=r.engine_kwargs, num_threads_per_engine=r.num_threads_per_engine,
                                    on_engine_failure=r.on_engine_failure, max_engine_restarts=r.max_engine_restarts)
            if self.colocation is not None:  # vLLM takes its share of each GPU before the learner loads (docs/gpu.md)
                rollout_f.result()
            learner_f = pool.submit(LearnerGroup, l.num_ranks, self.model_path, **learner_at, lr=l.lr, weight_decay=l.weight_decay,
                                    warmup_steps=cfg.warmup_steps, grad_clip=l.grad_clip, micro_batch_size=l.micro_batch_size,
                                    dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
                                    backend=l.backend, seed=cfg.seed, call_timeout_s=l.call_timeout_s,
                                    memory=l.memory_options(), num_threads_per_rank=l.num_threads_per_rank,
                                    placement_strategy=l.placement_strategy,
                                    on_nonfinite=l.on_nonfinite, max_nonfinite_skips=l.max_nonfinite_skips)
            if cfg.use_reference:
                self.reference = self.reference_group.launch(
                    ReferenceActor, self.ref_model, cfg.model.dtype, **reference_at,
                    attn_implementation=cfg.model.attn_implementation,
                    micro_batch_size=cfg.reference.micro_batch_size or l.micro_batch_size,
                    max_tokens_per_micro_batch=cfg.reference.max_tokens_per_micro_batch or l.max_tokens_per_micro_batch,
                    logprob_chunk_tokens=l.logprob_chunk_tokens,
                    num_threads=thread_budget(reference_at["options"]["num_cpus"], cfg.reference.num_threads))
            scorer = self.task.scorer(cfg)
            if scorer.runs_code:
                from aletheia_ray.actors.sandbox import sandbox_pool  # the sandbox stack only when a task runs code

                self.sandbox = sandbox_pool(cfg.reward.sandbox)
            self.rewards = RewardPool(scorer, num_actors=cfg.reward.num_actors,
                                      num_cpus_per_actor=cfg.reward.num_cpus_per_actor, sandbox_pool=self.sandbox)
            self.rollout, self.learner = rollout_f.result(), learner_f.result()
        if resume_dir is not None:
            client_state = self.learner.load_checkpoint(str(resume_dir / "deepspeed"))
            if client_state.get("step") != self.state.step:
                raise RuntimeError(f"checkpoint {resume_dir}: learner state is at step {client_state.get('step')}, "
                                   f"controller state at step {self.state.step}")
        sleeps = self.colocation is not None and cfg.colocate.sleep_rollout
        self.rollout_weights = RolloutWeights(
            WeightSync(cfg.sync.transport, cfg.sync.bucket_mb, cfg.sync.timeout_s, backend=l.backend), self.learner,
            self.rollout, sleep_level=cfg.colocate.sleep_level if sleeps else None,
            learner_holds_rollout_weights=not self.sync_policy.max_staleness)

    def restore_sampler(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    # ------------------------------------------------------------------ phases

    def cold_start(self) -> dict[str, float]:
        """SFT on formatted answers (verdicts | code blocks) on the learner group, then sync rollout and reference."""
        cs, style = self.cfg.cold_start, self.cfg.data.prompt_style
        sampler = PromptSampler(len(self.items), cs.prompts_per_step, seed=self.cfg.seed + 1, shuffle=True)
        rng = random.Random(self.cfg.seed)
        eos = self.tokenizer.eos_token_id
        rows = []
        if cs.lr is not None:
            self.learner.set_lr(cs.lr)
        self.rollout_weights.sleep()
        for s in range(cs.steps):
            idx = sampler.next_batch()
            completions = []
            for i in idx:
                text = self.task.cold_start_text(self.items[i], cs.targets, style, cs.reasoning, rng, fn=self.reward_fn)
                completions.append(self.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
            batch = sequences_to_batch([self.prompt_ids[i] for i in idx], completions, pad_id=self.pad_id)
            start = time.perf_counter()
            metrics = self.learner.train_step(batch, "sft", {})
            rows.append({"cold_start_step": s + 1, **metrics, "timing_s/update": time.perf_counter() - start})
            if self.cfg.logging.progress:
                print(f"cold start {s + 1}/{cs.steps} nll={metrics.get('actor/nll', float('nan')):.4f}",
                      file=sys.stderr, flush=True)
        if cs.lr is not None:
            self.learner.set_lr(self.cfg.learner.lr)
        with open(self.out / "cold_start.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        self.rollout_weights.sync()
        self._resync_reference(step=0)
        self.state.cold_start_done = True
        return rows[-1]

    def _resync_reference(self, step: int) -> None:
        """Reference := current policy; its weights are also kept on disk for checkpoints."""
        if self.reference is None:
            return
        ray.get(self.reference.load_weights.remote(self.learner.get_weights_ref()))
        self.ref_model = str(self.out / "reference_weights")
        shutil.rmtree(self.ref_model, ignore_errors=True)
        self.learner.save_hf(self.ref_model)
        self.state.ref_synced_step = step

    def _generate(self, step: int, idx: list[int]):
        r, a = self.cfg.rollout, self.cfg.algorithm
        start = time.perf_counter()
        gens = self.rollout.generate([self.prompt_ids[i] for i in idx], n=a.samples_per_prompt,
                                     temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_new_tokens,
                                     seed=self.cfg.seed * 1_000_003 + step)
        return gens, time.perf_counter() - start

    def _update(self, step: int, batch, prompt_indices: list[int]) -> dict[str, float]:
        """``updates_per_generation`` optimizer updates on disjoint mini-batches of prompt groups."""
        n = self.sync_policy.updates_per_generation
        settings = self.algorithm.loss_settings(self.cfg.algorithm.settings)
        if self.reference is None and self.algorithm.reference_setting in settings:
            settings[self.algorithm.reference_setting] = 0.0  # reference.enabled=false: no KL term
        if self.sync_policy.tis_cap is not None:
            settings["tis_cap"] = self.sync_policy.tis_cap
        parts = [batch] if n == 1 else [batch.select(rows) for rows in minibatch_rows(
            prompt_indices, n, random.Random(self.cfg.seed * 1_000_003 + step))]
        results = []
        for part in parts:
            results.append(self.learner.train_step(part, self.algorithm, settings,
                                                   temperature=self.cfg.rollout.temperature, step=step))
            self.state.updates += 1
        return results[0] if n == 1 else mean_update_metrics(results)

    def _advantages(self, gens) -> tuple[Any, dict[str, float]]:
        """The algorithm's advantage estimator over prompt groups (none: zeros, e.g. SFT-type losses)."""
        if self.algorithm.advantage is None:
            return [0.0] * len(gens), {}
        estimator = ADVANTAGE_ESTIMATORS[self.algorithm.advantage]
        adv = estimator([g.reward for g in gens], [g.prompt_index for g in gens],
                        normalize_by_std=self.cfg.algorithm.norm_adv_by_std)
        return adv.advantages, adv.metrics()

    def _filter(self, gens) -> tuple[list, dict[str, float]]:
        """The algorithm's sample filter (RAFT: at most 5 positives per prompt group), if it has one."""
        if self.algorithm.sample_filter is None:
            return gens, {}
        settings = self.algorithm.filter_settings(self.cfg.algorithm.settings)
        kept, metrics = self.algorithm.sample_filter([g.reward for g in gens], [g.prompt_index for g in gens],
                                                     **settings)
        return [gens[k] for k in kept], metrics

    def rl_step(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        timer = StageTimer()
        restarts = self.rollout.recovery.restarts
        with timer("step"):
            rollout = self.schedule.batch_for(step)
            with timer("gen_wait"):
                gens, gen_seconds = rollout.result()
            staleness = self.state.updates - rollout.weights_version
            idx = rollout.prompt_indices
            with timer("reward"):
                metrics = self.rewards.score(gens, [self.reward_items[i] for i in idx])
            kept, ds = gens, cfg.algorithm.dynamic_sampling
            if ds.enabled:  # DAPO: train on groups whose rewards differ, more rounds if short (dynamic_sampling.py)
                kept, gens, gen_seconds, metrics = fill_batch(
                    ScoredRound(gens, metrics, gen_seconds), lambda k: self._extra_round(step, k, timer),
                    target_groups=cfg.algorithm.prompts_per_step, max_extra_rounds=ds.max_extra_rounds,
                    min_groups=self.sync_policy.updates_per_generation)
            trained, filter_metrics = self._filter(kept)
            metrics.update(filter_metrics)
            actor, batch = {"actor/skipped_update": 1.0}, None
            self.rollout_weights.sleep()  # colocated: the GPUs are the learner's until the sync
            if trained:
                batch, actor = self._train(step, trained, metrics, timer, stale=staleness > 0)
            with timer("gen_wait"):  # generation and weight loading never overlap
                self.schedule.wait_for_next()
            with timer("sync"):
                sync = self.rollout_weights.sync()
                self.schedule.weights_loaded(self.state.updates)
            if self.reference is not None and cfg.reference.sync_steps and step % cfg.reference.sync_steps == 0:
                with timer("ref_sync"):
                    self._resync_reference(step)
        tokens = int(batch.attention_mask.sum()) if batch is not None else 0
        metrics.update(response_metrics(gens))
        if batch is not None and batch.old_logprobs is not None:
            metrics.update(logprob_gap_metrics(batch.old_logprobs, batch.rollout_logprobs, batch.loss_mask))
        metrics.update(actor)
        metrics.update({k: v for k, v in sync.items() if k != "timing_s/sync"})
        metrics.update(timer.with_other("step"))
        metrics.update(self.memory_poll.collect())
        metrics["rollout/engine_restarts"] = float(self.rollout.recovery.restarts - restarts)
        metrics.update({"timing_s/gen": gen_seconds, "perf/throughput": tokens / timer.times["timing_s/step"],
                        "perf/gen_tokens_per_s": sum(len(g.response_ids) for g in gens) / gen_seconds,
                        "perf/total_num_tokens": tokens, "epoch": rollout.epoch,
                        "rollout/staleness": float(staleness), "train/updates": float(self.state.updates)})
        return metrics

    def _extra_round(self, step: int, k: int, timer: StageTimer) -> ScoredRound:
        """Dynamic sampling's round k >= 1: the sampler's next prompts, generated with a seed of their own, scored."""
        idx = self.sampler.next_batch()
        with timer("gen_wait"):
            gens, seconds = self._generate(round_key(step, k), idx)
        with timer("reward"):
            return ScoredRound(gens, self.rewards.score(gens, [self.reward_items[i] for i in idx]), seconds)

    def _old_logprob_pass(self, stale: bool) -> bool:
        """A separate old-logprob pass only where the policy being updated is not the one that
        generated: a batch one update behind (async_tis) or a batch feeding several updates
        (batch_online: its later updates). Otherwise (on-policy, one update) the update's own
        detached logprobs are the old ones (ratio 1, TIS weights against the engine's included),
        as the loss takes them when ``old_logprobs`` is absent; the engine-vs-trainer gap
        metrics then come from the update."""
        return self.algorithm.needs_old_logprobs and (stale or self.sync_policy.updates_per_generation > 1)

    def _train(self, step: int, gens, metrics: dict, timer: StageTimer, stale: bool):
        """advantages -> reference logprobs (overlapping old logprobs) -> update(s) on these samples."""
        r = self.cfg.rollout
        with timer("adv"):
            advantages, adv_metrics = self._advantages(gens)
            metrics.update(adv_metrics)
            batch = generations_to_batch(gens, advantages, pad_id=self.pad_id)
        ref_logprobs = None
        if self.reference is not None:  # submitted first: it runs during old_logprob unless told not to
            ref_logprobs = self.reference.compute_logprobs.remote(batch, r.temperature, "response")
            if not self.cfg.reference.overlap_old_logprob:
                with timer("ref"):
                    ray.wait([ref_logprobs], fetch_local=False)
        if self._old_logprob_pass(stale):
            with timer("old_logprob"):
                batch.old_logprobs = self.learner.compute_logprobs(batch, r.temperature, "response")
        if ref_logprobs is not None:
            with timer("ref"):  # overlapped: only the part of the reference pass not hidden by old_logprob
                batch.ref_logprobs = ray.get(ref_logprobs)
        with timer("update"):
            actor = self._update(step, batch, [g.prompt_index for g in gens])
        return batch, actor

    def save(self, step: int) -> Path:
        d = ckpt.step_dir(self.out, step)
        shutil.rmtree(d, ignore_errors=True)
        self.state.step = step
        self.state.sampler = self.sampler.state_dict()
        self.state.rng = ckpt.capture_rng_state()
        self.learner.save_checkpoint(str(d / "deepspeed"), self.state.summary())
        self.learner.save_hf(str(d / "hf"))
        if self.state.ref_synced_step is not None:
            shutil.copytree(self.ref_model, d / "reference")
        ckpt.save_controller_state(d, self.state)
        pending = self.schedule.pending()  # async_tis: the next batch, already generated
        if pending is not None:
            ckpt.save_pending_rollout(d, pending)
        ckpt.fault_pause_in_save(d, step)  # tests only (ALETHEIA_FAULT_PAUSE_IN_SAVE): a kill before COMPLETE
        ckpt.mark_complete(d)  # fsyncs every file, then writes COMPLETE atomically
        ckpt.prune_checkpoints(self.out, self.cfg.trainer.keep_last, keep_steps=(step, best_step(self.out)))
        return d

    def evaluate(self) -> dict[str, float]:
        """The current policy on the task's held-out items (loaded once): ``evaluation.num_samples``
        each at the evaluation T/top-p, scored by the task's reward -> ``eval/*`` (``Task.heldout_metrics``)."""
        e, start = self.cfg.evaluation, time.perf_counter()
        if self.heldout is None:
            self.heldout = self.task.heldout(self.cfg, self.tokenizer)
            log.warning("held-out evaluation: %d %s (%s)", len(self.heldout.items), self.task.item_noun,
                        self.heldout.report)
        gens = self.rollout.generate(self.heldout.prompt_ids, n=e.num_samples, temperature=e.temperature, top_p=e.top_p,
                                     max_new_tokens=self.cfg.rollout.max_new_tokens, seed=self.cfg.seed + 7)
        self.rewards.score(gens, self.heldout.reward_items)
        return {**self.task.heldout_metrics(self.heldout.items, gens, e.num_samples),
                "timing_s/eval": time.perf_counter() - start}

    def _memory_actors(self) -> dict[str, Any]:
        actors = {f"learner_rank{r}": rank for r, rank in enumerate(self.learner.ranks)}
        actors.update({f"rollout_engine{i}": e for i, e in enumerate(self.rollout.engines)})
        if self.reference is not None:
            actors["reference"] = self.reference
        return actors

    # ------------------------------------------------------------------ the loop

    def prepare(self) -> dict[str, Any]:
        """Before the first step (after the cold start): nothing for RL; an offline algorithm builds
        its data here (``PreferenceTrainer``). Returns summary entries."""
        return {}

    def run(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.trainer
        start = self.state.step
        tracker = Tracker(str(self.out), total_steps=t.total_steps, start_step=start, config=config_to_dict(cfg),
                          wandb=cfg.logging.wandb, project=cfg.logging.project, run_name=cfg.logging.run_name,
                          progress=cfg.logging.progress)
        extra: dict[str, Any] = {"resumed_from_step": start, **self.data_report}
        try:
            if cfg.cold_start.enabled and not self.state.cold_start_done:
                extra.update({f"cold_start/{k}": v for k, v in self.cold_start().items() if isinstance(v, float)})
            extra.update(self.prepare())
            last = t.total_steps if t.stop_after_steps is None else min(t.total_steps, start + t.stop_after_steps)
            e = cfg.evaluation  # held-out eval/* go into the step's own record; best.json marks checkpoints
            best, evaluated = (BestCheckpoint(self.out, e.metric, e.mode) if e.enabled else None), None
            for step in range(start + 1, last + 1):
                metrics = self.rl_step(step)
                if best is not None and eval_due(step, every_steps=e.every_steps, total_steps=t.total_steps):
                    evaluated = self.evaluate()
                    best.observe(step, evaluated)
                    metrics.update(evaluated)
                tracker.log(step, metrics)
                self.state.step = step
                if t.save_steps and step % t.save_steps == 0:
                    self._save_marked(step, best)
            if t.save_final and self.state.step == t.total_steps and not (ckpt.step_dir(self.out, t.total_steps)
                                                                          / ckpt.COMPLETE).exists():
                self._save_marked(t.total_steps, best)
            if best is not None and self.state.step == t.total_steps:  # None: resumed after the last step
                extra.update(evaluated if evaluated is not None else self.evaluate())
        finally:
            extra["final_step"] = self.state.step
            if self.learner is not None and self.rollout is not None:
                try:
                    extra.update(self.memory_poll.collect(final=True))
                except Exception as exc:  # noqa: BLE001 - a dead actor must not hide the run's own error
                    log.warning("peak memory of the actors not collected: %s", exc)
            summary = tracker.close(extra)
        return summary

    def _save_marked(self, step: int, best: Optional[BestCheckpoint]) -> None:
        """Save a checkpoint, then record it in best.json (by the latest evaluation) if evaluating."""
        self.save(step)
        if best is not None:
            best.on_save(step)

    def shutdown(self) -> None:
        self.schedule.shutdown()
        for part in (self.rollout, self.learner, self.rewards, self.sandbox):  # sandbox: closes its slots too
            if part is not None:
                part.shutdown()
        self.reference_group.shutdown()
        if self.learner_placement is not None:
            self.learner_placement.shutdown()
        if self.colocation is not None:  # the shared placement group, after every actor in it
            self.colocation.shutdown()


def train(cfg: TrainConfig, trainer_cls: type = Trainer) -> dict[str, Any]:
    """Run a whole training job (starting or attaching to Ray) and return the run summary
    (``trainer_cls``: ``PreferenceTrainer`` for an offline algorithm, see ``launch/train.py``)."""
    with ray_session(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.temp_dir):
        trainer = trainer_cls(cfg)
        try:
            trainer.start()
            return trainer.run()
        finally:
            trainer.shutdown()

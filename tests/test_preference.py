"""DPO-Think's pieces without Ray: pair rows never split (micro-batches, shards), the registry's `dpo`
entry on interleaved rows equals the sigmoid loss of the sequence sums and adds up over micro-batches,
preference data (pairing, file checks, the SFT baseline's responses) and the config's checks."""
from __future__ import annotations

import json

import pytest
import torch

from aletheia_ray.actors.learner import shard_rows
from aletheia_ray.algorithms.losses import dpo_sigmoid_loss
from aletheia_ray.algorithms.registry import ALGORITHMS
from aletheia_ray.batch import sequences_to_batch
from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.micro_batches import micro_batches, plan_micro_batches
from aletheia_ray.preference import chosen_responses, load_pairs, make_pairs, write_jsonl
from aletheia_ray.train_config import TrainConfig
from fixture_paths import REPO_ROOT

SYNTHETIC = REPO_ROOT / "configs" / "debug_cpu_synthetic.yaml"
DPO = ["algorithm.loss=dpo", "algorithm.eps_low=null", "algorithm.eps_high=null", "algorithm.beta=0.5"]


def _units_whole(plan: list[list[int]], unit: int) -> bool:
    return all(len(rows) % unit == 0 and all(rows[k] % unit == 0 and rows[k:k + unit] == list(range(rows[k], rows[k] + unit))
                                              for k in range(0, len(rows), unit)) for rows in plan)


@pytest.mark.parametrize("max_rows, max_tokens", [(5, None), (2, None), (1, None), (4, 60), (8, 25), (1, 10)])
def test_pairs_are_never_split_by_micro_batches(max_rows, max_tokens):
    lengths = [7, 12, 3, 20, 9, 9, 15, 4, 11, 2]
    plan = plan_micro_batches(lengths, max_rows, max_tokens, rows_per_unit=2)
    assert sorted(r for rows in plan for r in rows) == list(range(10)) and _units_whole(plan, 2)
    for rows in plan:
        assert len(rows) <= max(2, max_rows - max_rows % 2)  # the cap in whole pairs, at least one pair
        if max_tokens is not None and len(rows) > 2:
            assert len(rows) * max(lengths[r] for r in rows) <= max_tokens
    with pytest.raises(ValueError, match="9 rows cannot be split into units of 2"):
        plan_micro_batches(lengths[:9], 4, None, rows_per_unit=2)


def test_shards_over_ranks_keep_pairs_and_sizes_differ_by_one_pair():
    batch = sequences_to_batch([[1, 2]] * 10, [[3] * n for n in range(1, 11)], pad_id=0)
    shards = shard_rows(batch, 3, rows_per_unit=2)
    assert [len(s) for s in shards] == [4, 4, 2]
    assert torch.equal(torch.cat([s.input_ids for s in shards]), batch.input_ids)
    with pytest.raises(ValueError, match="5 units cannot be split over 6 learner ranks"):
        shard_rows(batch, 6, rows_per_unit=2)


def _pair_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 5, 2, 4, 6, 1]  # chosen_0, rejected_0, chosen_1, ...
    batch = sequences_to_batch([[1, 2, 3]] * 6, [[4] * n for n in lengths], pad_id=0)
    batch.ref_sequence_logprobs = -torch.rand(6, generator=g) * 5
    logprobs = (-torch.rand(batch.loss_mask.shape, generator=g)).requires_grad_(True)
    return batch, logprobs


def test_dpo_entry_is_the_sigmoid_loss_of_sequence_sums_and_micro_batches_add_up():
    batch, logprobs = _pair_batch()
    dpo = ALGORITHMS["dpo"]
    loss, metrics = dpo.loss(logprobs, batch, global_num_tokens=float(batch.loss_mask.sum()),
                             global_num_sequences=6.0, beta=0.5)
    seq = (logprobs * batch.loss_mask).sum(-1)
    ref = batch.ref_sequence_logprobs
    expected, expected_metrics = dpo_sigmoid_loss(seq[0::2], seq[1::2], ref[0::2], ref[1::2], beta=0.5)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-7) and metrics == pytest.approx(expected_metrics)
    # the learner's micro-batches (one pair each, trimmed by a token budget) add up to the whole batch
    total, sums = 0.0, {}
    for rows, mb in micro_batches(batch, 2, 12, rows_per_unit=2):
        part, m = dpo.loss(logprobs[rows][:, : mb.loss_mask.shape[1]], mb, global_num_tokens=1.0,
                           global_num_sequences=6.0, beta=0.5)
        total += part.item()
        for key, value in m.items():
            sums[key] = sums.get(key, 0.0) + value
    assert total == pytest.approx(loss.item(), abs=1e-6) and sums == pytest.approx(metrics, abs=1e-6)
    batch.ref_sequence_logprobs = None
    with pytest.raises(ValueError, match="precomputed reference logprobs"):
        dpo.loss(logprobs, batch, global_num_tokens=1.0, global_num_sequences=6.0, beta=0.5)


def test_pairs_from_samples_written_and_read_back(tmp_path):
    lists = {lst.idx: lst for lst in make_synthetic_lists(3, num_candidates=[2], seed=0)}
    samples = []
    for idx, lst in lists.items():
        wrong = "B" if lst.chosen_answer == "A" else "A"
        samples += [{"idx": idx, "model": "policy", "completion": f"\\boxed{{{lst.chosen_answer}}}"},
                    {"idx": idx, "model": "policy", "completion": f"\\boxed{{{wrong}}}"},
                    {"idx": idx, "model": "policy", "completion": "no verdict"}]
    only_correct = next(iter(lists))
    samples = [s for s in samples if s["idx"] != only_correct or s["completion"].endswith(f"{{{lists[only_correct].chosen_answer}}}")]
    pairs, summary = make_pairs(lists, samples, pairs_per_list=4, style="instruct")
    assert summary["pairs"] == len(pairs) == 4 and summary["lists_without_rejected"] == [only_correct]
    assert {p["rejected_reward"] for p in pairs} == {0.0, -1.0}
    assert all(p["chosen"] == f"\\boxed{{{p['chosen_answer']}}}" for p in pairs)
    assert len(chosen_responses(pairs)) == 2  # the SFT baseline: each distinct chosen response once
    path = write_jsonl(pairs, tmp_path / "pairs.jsonl")
    assert load_pairs(path) == pairs
    with pytest.raises(ValueError, match=r"pairs.jsonl: line 1: field 'ref_chosen_logp' missing"):
        load_pairs(path, need_reference=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[1]["rejected"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"pairs.jsonl: line 2: field 'rejected' missing"):
        load_pairs(path)
    with pytest.raises(ValueError, match="1 samples name a list idx that is not in the lists"):
        make_pairs(lists, [{"idx": "nope", "model": "m", "completion": "x"}])


def test_offline_algorithms_need_listem_lists_and_no_async(tmp_path):
    cfg = load_config(SYNTHETIC, ["output_dir=/tmp/x", *DPO, "cold_start.lr=3e-3"], schema=TrainConfig)
    assert cfg.use_reference and cfg.algorithm.settings == {"beta": 0.5} and cfg.cold_start.lr == 3e-3
    assert [r["note"] for r in cfg.actor_layout() if r["role"] == "reference"] == ["scores the pairs once, then stops"]
    base = load_config(SYNTHETIC, ["output_dir=/tmp/x", "algorithm.loss=sft_chosen", "algorithm.eps_low=null",
                                   "algorithm.eps_high=null", "algorithm.beta=null"], schema=TrainConfig)
    assert not base.use_reference and base.algorithm.settings == {}
    with pytest.raises(ConfigError, match="'algorithm.eps_high' .* does not take setting 'eps_high'"):
        load_config(SYNTHETIC, ["output_dir=/tmp/x", "algorithm.loss=dpo"], schema=TrainConfig)
    with pytest.raises(ConfigError, match="offline .* has no sync mode"):
        load_config(SYNTHETIC, ["output_dir=/tmp/x", *DPO, "algorithm.sync_mode=async_tis"], schema=TrainConfig)
    lists = tmp_path / "lists.jsonl"
    lists.write_text("")
    with pytest.raises(ConfigError, match="data.kind lists or synthetic, reward.fn list_em"):
        load_config(SYNTHETIC, ["output_dir=/tmp/x", *DPO, "data.kind=pairs", f"data.train_path={lists}", "reward.fn=pair_em"],
                    schema=TrainConfig)

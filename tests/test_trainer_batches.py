"""Pure pieces of the controller: prompt sampler, generations -> TrainBatch, per-sample rewards."""
from __future__ import annotations

import pytest
import torch

from aletheia_ray.batch import Generation
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.metrics import reward_metrics as summarize
from aletheia_ray.rewards import FORMAT_PENALTY, Overlong, extract_code, score_pass_rate, score_verdict
from aletheia_ray.sampler import PromptSampler
from aletheia_ray.sandbox.types import Status, SubmissionResult
from aletheia_ray.batch import generations_to_batch, sequences_to_batch
from aletheia_ray.metrics import response_metrics
from aletheia_ray.tasks.verifier_lists import verdict_completion
from aletheia_ray.verdicts import parse_verdict


# ------------------------------------------------------------------ sampler

def test_sampler_crosses_epochs_and_covers_each_epoch_once():
    s = PromptSampler(10, 4, seed=1)
    batches = [s.next_batch() for _ in range(5)]  # 20 items = 2 epochs
    flat = [i for b in batches for i in b]
    assert all(len(b) == 4 for b in batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # a fresh permutation per epoch
    assert (s.epoch, s.position) == (1, 10)


@pytest.mark.parametrize("consumed", [1, 2, 3, 5])  # 5 batches of 4 over 10 items: 2 is mid, 5 the boundary
def test_sampler_resume_reproduces_the_order_including_epoch_boundaries(consumed):
    straight = PromptSampler(10, 4, seed=7)
    expected = [straight.next_batch() for _ in range(8)]
    first = PromptSampler(10, 4, seed=7)
    for _ in range(consumed):
        first.next_batch()
    resumed = PromptSampler(10, 4, seed=7)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.next_batch() for _ in range(8 - consumed)] == expected[consumed:]


def test_sampler_refuses_state_from_other_data():
    state = PromptSampler(10, 4, seed=7).state_dict()
    with pytest.raises(ValueError, match="num_items"):
        PromptSampler(11, 4, seed=7).load_state_dict(state)


# ------------------------------------------------------------------ batches

def _gen(prompt, response, index=0, lp=None, finish="stop"):
    return Generation(prompt_index=index, prompt_ids=prompt, response_ids=response, text="", finish_reason=finish,
                      rollout_logprobs=lp if lp is not None else [-0.5] * len(response))


def test_generations_to_batch_aligns_masks_and_logprobs_with_next_tokens():
    gens = [_gen([1, 2, 3], [4, 5], lp=[-0.1, -0.2]), _gen([1, 2], [6, 7, 8], index=1, lp=[-0.3, -0.4, -0.5])]
    batch = generations_to_batch(gens, torch.tensor([1.0, -1.0]), pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5], [1, 2, 6, 7, 8]]
    assert batch.attention_mask.tolist() == [[1] * 5, [1] * 5]
    # loss_mask[b, t] marks input_ids[b, t+1] as a response token
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert torch.allclose(batch.rollout_logprobs, torch.tensor([[0, 0, -0.1, -0.2], [0, -0.3, -0.4, -0.5]]))
    assert batch.advantages.tolist() == [1.0, -1.0]


def test_right_padding_of_unequal_lengths():
    batch = sequences_to_batch([[5, 6]], [[7]], pad_id=9)
    batch2 = sequences_to_batch([[5, 6], [1, 2, 3]], [[7], [4, 4]], pad_id=9)
    assert batch.input_ids.tolist() == [[5, 6, 7]]
    assert batch2.input_ids.tolist() == [[5, 6, 7, 9, 9], [1, 2, 3, 4, 4]]
    assert batch2.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert batch2.loss_mask.tolist() == [[0, 1, 0, 0], [0, 0, 1, 1]]


def test_empty_response_is_an_error_naming_the_row():
    with pytest.raises(ValueError, match="row 1: empty response"):
        sequences_to_batch([[1], [1]], [[2], []], pad_id=0)


def test_response_metrics_count_truncations():
    m = response_metrics([_gen([1], [2, 3]), _gen([1], [2, 3, 4, 5], finish="length")])
    assert m["response_length/mean"] == 3 and m["response_length/clip_ratio"] == 0.5


def test_cold_start_targets_parse_in_both_styles():
    assert parse_verdict(verdict_completion("C", "think", "hmm"), 3, "think").letter == "C"
    assert parse_verdict(verdict_completion("B", "instruct"), 2, "instruct").letter == "B"


# ------------------------------------------------------------------ rewards

LST = make_synthetic_lists(1, num_candidates=[3], seed=0)[0]


def test_verdict_rewards_list_em_and_unparseable_counted():
    right, wrong = LST.chosen_answer, next(x for x in "ABC" if x != LST.chosen_answer)
    samples = [score_verdict(f"\\boxed{{{right}}}", LST, style="instruct"),
               score_verdict(f"\\boxed{{{wrong}}}", LST, style="instruct"),
               score_verdict("no answer", LST, style="instruct")]
    assert [s.reward for s in samples] == [1.0, 0.0, -1.0]
    assert [s.parsed_ok for s in samples] == [True, True, False] and "boxed" in samples[2].reason
    m = summarize(samples)
    assert m["reward/mean"] == 0.0 and m["reward/list_acc"] == pytest.approx(1 / 3)
    assert m["reward/parse_rate"] == pytest.approx(2 / 3) and m["reward/num_unparseable"] == 1


def test_overlong_penalty_is_added_in_the_last_cache_tokens():
    text = f"\\boxed{{{LST.chosen_answer}}}"
    ok = score_verdict(text, LST, style="instruct", response_length=12, overlong=Overlong(16, 4))
    ramp = score_verdict(text, LST, style="instruct", response_length=14, overlong=Overlong(16, 4))
    assert ok.reward == 1.0 and ramp.overlong_penalty == pytest.approx(-0.5) and ramp.reward == pytest.approx(0.5)


def test_pass_rate_rewards_and_infra_failure_is_never_zero():
    assert extract_code("text\n```python\nprint(1)\n```\nmore ```cpp\nint x;\n```") == "int x;\n"
    assert score_pass_rate(SubmissionResult("s", Status.WA, 0.25)).reward == 0.25
    assert score_pass_rate(SubmissionResult("s", Status.OK, 1.0)).correct
    missing = score_pass_rate(None)
    assert missing.reward == FORMAT_PENALTY and not missing.parsed_ok
    with pytest.raises(RuntimeError, match="submission s7"):
        score_pass_rate(SubmissionResult("s7", Status.INFRA, None))

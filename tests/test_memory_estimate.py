"""Learner memory estimator: parameter counts, ZeRO partitioning, activation/logit options, the paper table."""
import subprocess
import sys

import pytest

from aletheia_ray.memory_estimate import (
    ARCHITECTURES, GB, OPTION_SETS, PAPER_SEQ_LENS, estimate_learner_memory, fits, num_parameters,
    paper_rows, paper_table,
)

MODEL_STATES = ("parameters", "gradients", "optimizer")


@pytest.mark.parametrize("name, published", [
    ("Qwen2.5-1.5B", 1.54e9), ("Qwen2.5-7B", 7.62e9), ("Qwen2.5-14B", 14.77e9),
])
def test_parameter_counts_match_published_sizes(name, published):
    assert num_parameters(name) == pytest.approx(published, rel=0.02)


def test_parameter_count_of_the_tied_small_model_is_exact():
    # 28 layers x 46,797,824 + 151,936 x 1,536 tied embedding + 1,536 final norm
    assert num_parameters("Qwen2.5-1.5B") == 1_543_714_304


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_zero2_optimizer_is_12_bytes_per_param_over_ranks(name):
    estimate = estimate_learner_memory(name, seq_len=4096, world_size=8, zero_stage=2)
    assert estimate["optimizer"] == 12 * num_parameters(name) / 8 / GB
    assert estimate["parameters"] == 2 * num_parameters(name) / GB  # ZeRO-2 keeps full bf16 weights


def test_zero3_partitions_parameters_over_ranks_and_offload_removes_the_partition():
    psi = num_parameters("Qwen2.5-7B")
    zero2 = estimate_learner_memory("Qwen2.5-7B", seq_len=4096, zero_stage=2)
    zero3 = estimate_learner_memory("Qwen2.5-7B", seq_len=4096, zero_stage=3, world_size=8)
    offloaded = estimate_learner_memory("Qwen2.5-7B", seq_len=4096, zero_stage=3, world_size=8, offload_params=True)
    assert zero3["parameters"] - offloaded["parameters"] == pytest.approx(2 * psi / 8 / GB)
    assert 0 < offloaded["parameters"] < zero3["parameters"] < zero2["parameters"]  # gathered layers remain
    assert zero3["optimizer"] == zero2["optimizer"]


def test_offload_optimizer_leaves_no_optimizer_state_on_the_gpu():
    on_gpu = estimate_learner_memory("Qwen2.5-14B", seq_len=4096)
    offloaded = estimate_learner_memory("Qwen2.5-14B", seq_len=4096, offload_optimizer=True)
    assert offloaded["optimizer"] == 0.0
    assert offloaded["gradients"] < on_gpu["gradients"]
    assert offloaded["total"] < on_gpu["total"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("seq_len", PAPER_SEQ_LENS)
def test_checkpointing_lowers_activations_only(name, seq_len):
    plain = estimate_learner_memory(name, seq_len=seq_len)
    checkpointed = estimate_learner_memory(name, seq_len=seq_len, gradient_checkpointing=True)
    assert checkpointed["activations"] < plain["activations"]
    for component in MODEL_STATES + ("logits",):
        assert checkpointed[component] == plain[component]


def test_chunked_logits_at_16k_tokens_is_under_a_tenth_of_full():
    full = estimate_learner_memory("Qwen2.5-7B", seq_len=16384, logits="full")
    chunked = estimate_learner_memory("Qwen2.5-7B", seq_len=16384, logits="chunked", logprob_chunk_tokens=1024)
    assert chunked["logits"] < full["logits"] / 10
    assert full["logits"] == pytest.approx(16384 * 152064 * 4 * 4 / GB)  # k = 4 fp32 copies


def test_total_is_the_sum_of_components_and_scales_with_micro_batch_tokens():
    one_row = estimate_learner_memory("Qwen2.5-7B", seq_len=4096)
    four_rows = estimate_learner_memory("Qwen2.5-7B", seq_len=4096, micro_batch_tokens=4 * 4096)
    assert one_row["total"] == pytest.approx(sum(v for k, v in one_row.items() if k != "total"))
    assert four_rows["activations"] > 3.9 * one_row["activations"]
    assert estimate_learner_memory("Qwen2.5-7B", seq_len=4096, micro_batch_tokens=100) == one_row


def test_eager_attention_costs_more_than_flash_attention():
    flash = estimate_learner_memory("Qwen2.5-7B", seq_len=4096)
    eager = estimate_learner_memory("Qwen2.5-7B", seq_len=4096, flash_attention=False)
    assert eager["activations"] > 3 * flash["activations"]


def test_7b_at_16k_does_not_fit_with_full_logits_but_fits_with_chunking_and_checkpointing():
    full = estimate_learner_memory("Qwen2.5-7B", seq_len=16384, **OPTION_SETS["a"][1])
    chunked_ckpt = estimate_learner_memory("Qwen2.5-7B", seq_len=16384, **OPTION_SETS["c"][1])
    assert not fits(full, gpu_gb=141)
    assert fits(chunked_ckpt, gpu_gb=141)
    assert full["total"] > 141 > 141 * 0.9 > 3 * chunked_ckpt["total"]  # 173.3 GB vs 39.5 GB


def test_14b_at_16k_needs_checkpointing():
    rows = {r["key"]: r["estimate"] for r in paper_rows() if r["model"] == "Qwen2.5-14B" and r["tokens"] == 16384}
    assert [key for key in OPTION_SETS if fits(rows[key])] == ["c", "d", "e"]


def test_paper_table_has_one_row_per_model_length_and_option_set():
    table = paper_table()
    rows = [line for line in table.splitlines() if line.startswith("| Qwen2.5-")]
    assert len(rows) == 3 * 2 * 5
    assert all(row.rstrip(" |").endswith(("yes", "no")) for row in rows)
    needs = [line for line in table.splitlines() if " needs: " in line]
    assert needs[1] == "- Qwen2.5-7B needs: 4096 tokens: (a); 16384 tokens: (c)"
    assert len(needs) == 3


@pytest.mark.parametrize("kwargs, named", [
    (dict(logits="dense"), "'dense'"),
    (dict(zero_stage=4), "zero_stage 4"),
    (dict(offload_params=True), "offload_params"),
])
def test_unknown_or_invalid_option_raises_value_error_naming_it(kwargs, named):
    with pytest.raises(ValueError, match=named):
        estimate_learner_memory("Qwen2.5-7B", seq_len=4096, **kwargs)


def test_unknown_names_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="'Qwen2.5-3B'"):
        estimate_learner_memory("Qwen2.5-3B", seq_len=4096)
    with pytest.raises(ValueError, match="'z'"):
        paper_table(options=("a", "z"))


def test_module_is_pure_standard_library_and_prints_the_table():
    code = ("import sys, runpy; runpy.run_module('aletheia_ray.memory_estimate', run_name='__main__'); "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "| Qwen2.5-14B | 16384 | (e) ZeRO-2, chunked, ckpt, offload optimizer |" in out

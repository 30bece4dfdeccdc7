"""Embedded tiny model: deterministic build, HF round trip, tokenizer, cache and spec errors.

(vLLM loading the same directory is covered by tests/test_rollout_pool.py.)
"""
from fixture_paths import SHARED_DATA
import hashlib
from pathlib import Path

import pytest
import torch

from aletheia_ray.models import (
    build_tiny_model, build_tiny_tokenizer, cached_tiny_model, resolve_model_path,
)


def dir_digest(path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(path).iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return cached_tiny_model(seed=0, cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_build_is_deterministic_per_seed(tmp_path, tiny_dir):
    a = build_tiny_model(str(tmp_path / "a"), seed=0)
    b = build_tiny_model(str(tmp_path / "b"), seed=1)
    assert dir_digest(a) == dir_digest(tiny_dir)  # same seed, separate builds: identical files
    assert dir_digest(b)["model.safetensors"] != dir_digest(a)["model.safetensors"]
    assert dir_digest(b)["tokenizer.json"] == dir_digest(a)["tokenizer.json"]


def test_transformers_loads_it_as_tied_qwen2(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers) == (128, 2, 2)
    assert cfg.hidden_size // cfg.num_attention_heads == 64  # a head size vLLM's CPU backend supports
    assert cfg.vocab_size == len(tok) and 2000 <= len(tok) <= 4096
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([tok("def f(x):\n    return x")["input_ids"]])
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_tokenizer_special_tokens_chat_template_and_think_tags():
    tok = build_tiny_tokenizer()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    text = tok.apply_chat_template([{"role": "user", "content": "Which is right?"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhich is right?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok("<think>ok</think> \\boxed{B}<|im_end|>")["input_ids"]
    assert tok.convert_tokens_to_ids("<think>") in ids and tok.convert_tokens_to_ids("</think>") in ids
    # think tags are plain added tokens: they survive skip_special_tokens (the parser needs them)
    assert tok.decode(ids, skip_special_tokens=True) == "<think>ok</think> \\boxed{B}"
    code = "for (int i = 0; i < n; i++) { sum += v[i]; }\n    return sum;"
    assert tok.decode(tok(code)["input_ids"]) == code  # byte-level: lossless round trip
    assert len(tok(code)["input_ids"]) < len(code) / 2  # trained merges compress code


def test_verifier_list_prompt_is_not_absurdly_long():
    import json

    tok = build_tiny_tokenizer()
    row = json.loads((SHARED_DATA / "humaneval_lists_dev.jsonl").read_text().splitlines()[0])
    text = row["query"] + "".join(row["candidates"])
    assert len(tok(text)["input_ids"]) < len(text) / 2.5


def test_resolve_caches_by_content_and_is_process_safe(tmp_path):
    first = resolve_model_path("embedded:tiny", cache_dir=str(tmp_path))
    assert Path(first).parent == tmp_path / "models" and (Path(first) / "config.json").is_file()
    mtime = (Path(first) / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("embedded:tiny", cache_dir=str(tmp_path)) == first
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    other = resolve_model_path("embedded:tiny?seed=3&num_layers=3", cache_dir=str(tmp_path))
    assert other != first
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(other).num_hidden_layers == 3
    assert not list((tmp_path / "models").glob("*.tmp-*"))  # no leftovers of the atomic build


def test_resolve_env_cache_and_directory(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.setenv("ALETHEIA_CACHE", str(tmp_path / "envcache"))
    p = resolve_model_path("embedded:tiny")
    assert p.startswith(str(tmp_path / "envcache"))
    assert resolve_model_path(tiny_dir) == tiny_dir


def test_resolve_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="unknown embedded model"):
        resolve_model_path("embedded:gpt5")
    with pytest.raises(TypeError, match="unknown tiny-model size key"):
        resolve_model_path("embedded:tiny?layers=4", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="head size"):
        build_tiny_model(str(tmp_path / "x"), hidden_size=64, num_heads=4)  # head size 16
    # embedded:smollm2 (real model, opt-in) is covered by tests/test_smollm2.py

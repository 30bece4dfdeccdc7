# The two commands the README promises: `make demo` and `make test` (+ `make bench`).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install demo test test-fast bench bench-quick

install:
	bash scripts/install.sh

# The demo learns (configs/demo.yaml: GRPO on synthetic lists, held-out ListAcc every 5 steps), then reports
# its own run; the real-data run (fixture lists: machinery, not learning) is `aletheia-train --config configs/debug_cpu.yaml`.
DEMO_OUT ?= /tmp/aletheia_demo
demo: install
	aletheia-train --config configs/demo.yaml output_dir=$(DEMO_OUT)
	aletheia-eval report --runs $(DEMO_OUT) --out $(DEMO_OUT)/report
	@echo "demo report: $(DEMO_OUT)/report/report.md and report.html (training curves, held-out ListAcc, cost per step)"

test: install
	$(PYTHON) -m pytest -ra --durations=15

# Local iteration: everything but the long end-to-end tests (marked `slow`; CI runs them).
test-fast:
	$(PYTHON) -m pytest -ra -m "not slow"

# The side-by-side benchmarks (e2e_vs_trl, rollout_vs_hf, sync_bandwidth; ~20 min on 2 cores) ->
# docs/bench/*.json and docs/benchmarks.md. Serialised with other heavy runs on this machine.
bench:
	EXTRAS=cpu,dev,bench bash scripts/install.sh
	flock /tmp/aletheia-heavy.lock aletheia-bench all

# Smoke run of the same (a few minutes; the docs it writes say so).
bench-quick:
	EXTRAS=cpu,dev,bench bash scripts/install.sh
	flock /tmp/aletheia-heavy.lock aletheia-bench all --quick

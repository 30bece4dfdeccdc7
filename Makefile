# The two commands the README promises: `make demo` and `make test` (+ `make bench`).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install demo test test-fast bench bench-quick

install:
	bash scripts/install.sh

demo: install
	aletheia-train --config configs/debug_cpu.yaml

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

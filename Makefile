# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install demo test test-fast

install:
	bash scripts/install.sh

demo: install
	aletheia-train --config configs/debug_cpu.yaml

test: install
	$(PYTHON) -m pytest -ra --durations=15

# Local iteration: everything but the long end-to-end tests (marked `slow`; CI runs them).
test-fast:
	$(PYTHON) -m pytest -ra -m "not slow"

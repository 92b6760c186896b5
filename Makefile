# notifier: `make test` builds the environment from the lock file and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install bytecode test lint typecheck unit run demo bench chaos fuzz lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# notifier's own modules byte-compiled, as installing a wheel does: an editable checkout otherwise
# compiles them at every start wherever PYTHONDONTWRITEBYTECODE is set (a CLI command's start).
# A module edited since is compiled again in memory, so a stale file costs time, never correctness.
bytecode:
	$(BIN)/python -m compileall -q notifier

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check notifier tests bench
	$(BIN)/ruff format --check notifier tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/notifier run

# A month of the regulator's work against sandbox platforms, on a simulated clock (SPEC §9).
# DEMO_ARGS passes flags through, e.g. make demo DEMO_ARGS="--requests 400 --seed 3".
demo: $(STAMP)
	$(BIN)/notifier demo $(DEMO_ARGS)

bench: $(STAMP) bytecode
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/dispatch.py --notices 0 --processes 2
	$(BIN)/python bench/report.py
	$(BIN)/python bench/sla.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/evidence.py

# Coverage-guided fuzzing of the parsers, the callback verifier and the reply classifier (atheris),
# FUZZ_SECONDS per target; new inputs and crashes go to var/fuzz/<target>/ (README.md, Development).
# make test runs the same harnesses for a fixed number of inputs.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= requests acks callbacks replies
fuzz: $(STAMP)
	@for target in $(FUZZ_TARGETS); do \
		$(BIN)/python -m tests.fuzz.run $$target --seconds $(FUZZ_SECONDS) || exit 1; \
	done

# Two daemons on RabbitMQ + PostgreSQL under kill -9, restarts and outages, then the verifier's
# checklist (SPEC §12; docs/reliability.md). Restarts this machine's RabbitMQ and PostgreSQL once each.
# CHAOS_ARGS passes flags through, e.g. make chaos CHAOS_ARGS="--requests 2000 --kills 5".
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

# Re-resolve the pinned dependencies after editing pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache .import_linter_cache

# Two commands: `make run` and `make test`. Both set up .venv first; a second call skips set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch 2.13.0's CPU build comes from a local wheel folder where the machine has one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export OMP_WAIT_POLICY ?= PASSIVE
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q $(FIND_LINKS)

.PHONY: setup run smoke test lint bench ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "set-up done: $(VENV)"

run: setup
	$(BIN)/refinery run --pipeline digits

smoke: setup
	$(BIN)/refinery run --pipeline smoke

# The house rules first (ruff: the lint rules in pyproject.toml; lint-imports: imports point down,
# refinery imports neither prefect nor dvc, models know no method, no cycles), then the suite.
test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Speed benches: each prints its ratios, measured side by side in one run, on its last line.
# Quality tables (minutes each): python -m bench.{teacher,upcycle,distill,unlearn}_quality
BENCHES := train moe distill unlearn

bench: setup
	@for b in $(BENCHES); do echo "== bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done

ui: setup
	$(BIN)/refinery ui

clean:
	rm -rf $(VENV) .prefect .refinery

# Two commands: `make run` and `make test`. Both set up .venv first; a second call skips set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Set-up reinstalls when what it installs changes, not when a checkout touches a file: the stamp's
# name holds a hash of the two files' contents, so only new contents miss it.
SETUP_HASH := $(shell cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(SETUP_HASH)
# `dvc plots show` draws offline: Vega, Vega-Lite and vega-embed from the installed vl-convert-python,
# inlined into this template, which .dvc/config.local names (a checkout without it uses DVC's page).
PLOTS_TEMPLATE := .dvc/plots-offline.html
# torch 2.13.0's CPU build comes from a local wheel folder where the machine has one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export OMP_WAIT_POLICY ?= PASSIVE
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q $(FIND_LINKS)

.PHONY: setup plots-template run smoke test lint bench ui clean

setup: $(STAMP) $(PLOTS_TEMPLATE)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed $(VENV)/.installed-*
	@$(MAKE) --no-print-directory plots-template
	@touch $(STAMP)
	@echo "set-up done: $(VENV)"

$(PLOTS_TEMPLATE): | $(STAMP)
	@$(MAKE) --no-print-directory plots-template

plots-template:
	@$(BIN)/python -m refinery.report.dvc_template $(PLOTS_TEMPLATE)
	@$(BIN)/dvc config --local plots.html_template $(notdir $(PLOTS_TEMPLATE))

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
BENCHES := train moe distill unlearn cli

bench: setup
	@for b in $(BENCHES); do echo "== bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done

ui: setup
	$(BIN)/refinery ui

clean:
	rm -rf $(VENV) .prefect .refinery

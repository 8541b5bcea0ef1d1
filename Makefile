# The two commands of the quick start, and what they need. Everything installs into ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Other instrumentation libraries, for the convention tests: their SDK pins clash with ours.
CONVENTIONS := .venv-conventions
# The Vercel AI SDK (JavaScript) for its convention test, from the committed package-lock.json.
VERCEL := tests/conventions/vercel
CONVENTIONS_LEGACY := .venv-conventions-legacy

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml instrumentation/pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]" -e "./instrumentation[test]"
	touch $@

demo: $(VENV)/.installed  ## a collector on the embedded store, a day of GenAI traffic, its spend report
	$(BIN)/spanmeter demo

$(CONVENTIONS)/.installed: tests/conventions/requirements.txt
	$(PYTHON) -m venv $(CONVENTIONS)
	$(CONVENTIONS)/bin/pip install --quiet --no-deps -r tests/conventions/requirements.txt
	touch $@

$(CONVENTIONS_LEGACY)/.installed: tests/conventions/requirements-legacy.txt
	$(PYTHON) -m venv $(CONVENTIONS_LEGACY)
	$(CONVENTIONS_LEGACY)/bin/pip install --quiet --no-deps -r tests/conventions/requirements-legacy.txt
	touch $@

$(VERCEL)/node_modules/.installed: $(VERCEL)/package.json $(VERCEL)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(VERCEL) --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/conventions/test_vercel_ai.py will skip"; fi

test: $(VENV)/.installed $(CONVENTIONS)/.installed $(CONVENTIONS_LEGACY)/.installed $(VERCEL)/node_modules/.installed  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.installed  ## end-to-end ingest throughput beside protobuf's decode rate
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(CONVENTIONS) $(VERCEL)/node_modules $(CONVENTIONS_LEGACY) .spanmeter .spanmeter-demo

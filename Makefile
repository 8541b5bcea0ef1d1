# The two commands of the quick start, and what they need. Everything installs into ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Other instrumentation libraries, for the convention tests, one virtualenv per requirements file:
# their SDK pins clash with ours and with each other.
CONVENTION_ENVS := $(patsubst tests/conventions/requirements-%.txt,.venv-conventions-%,$(wildcard tests/conventions/requirements-*.txt))
# The Vercel AI SDK (JavaScript) for its convention test, from the committed package-lock.json.
VERCEL := tests/conventions/vercel

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml instrumentation/pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]" -e "./instrumentation[test]"
	touch $@

demo: $(VENV)/.installed  ## a collector on the embedded store, a day of GenAI traffic, its spend report
	$(BIN)/spanmeter demo

.venv-conventions-%/.installed: tests/conventions/requirements-%.txt
	$(PYTHON) -m venv .venv-conventions-$*
	.venv-conventions-$*/bin/pip install --quiet --no-deps -r $<
	touch $@

$(VERCEL)/node_modules/.installed: $(VERCEL)/package.json $(VERCEL)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(VERCEL) --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/conventions/test_vercel_ai.py will skip"; fi

# Debian's chromium, for the digest's screenshot test (playwright drives it; it never downloads a browser).
/usr/bin/chromium:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium: the digest screenshot test will skip"; \
	else echo "chromium not installed and no root apt-get: tests/collector/test_digest.py's screenshot test will skip"; fi

test: $(VENV)/.installed $(addsuffix /.installed,$(CONVENTION_ENVS)) $(VERCEL)/node_modules/.installed /usr/bin/chromium  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=20

lint: $(VENV)/.installed  ## ruff on the tree; mypy on the instrumentation (the collector's mypy run is not clean yet)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy instrumentation/src

bench: $(VENV)/.installed  ## end-to-end ingest throughput beside protobuf's decode rate
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .venv-conventions-* $(VERCEL)/node_modules .spanmeter .spanmeter-demo .spanmeter-spool

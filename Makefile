# era-beacon-notify. Needs python3 (3.10+) with venv; everything else is installed into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test demo bench check clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: venv ## run the test suite (what CI runs)
	$(PY) -m pytest

demo: venv ## run notify_once.py twice against a local stand-in API
	$(PY) tests/demo.py

bench: venv ## measure one run against a minimal baseline; writes bench/results.md
	$(PY) bench/bench.py

check: venv ## validate the shipped config.ini (no network)
	$(PY) notify_once.py --check

clean:
	rm -rf $(VENV) .demo bench/out .pytest_cache

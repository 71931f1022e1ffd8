# cvbook: one entry point. `make book` sets up and builds the book; `make test` runs every test.
PROFILE ?= cpu
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: book test setup bench clean-preview

book: $(STAMP)
	CVBOOK_PROFILE=$(PROFILE) $(VENV)/bin/cvbook_build

test: $(STAMP)
	$(VENV)/bin/cvbook_test

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e .
	touch $@

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

# cvbook: one entry point. `make book` sets up and builds the book; `make test` runs every test.
PROFILE ?= cpu
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: book test setup bench

book: $(STAMP)
	CVBOOK_PROFILE=$(PROFILE) $(VENV)/bin/cvbook_build

test: $(STAMP)
	$(VENV)/bin/cvbook_test

setup: $(STAMP)

# Quarto renders the book. Without one on PATH, setup tries the design card's PyPI package, whose
# build downloads Quarto and so needs internet; where that fails it says so and goes on, and the
# build writes a labelled preview instead.
$(STAMP): settings.ini setup.py
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e .
	@if command -v quarto >/dev/null || test -x $(VENV)/bin/quarto; then echo "setup: using $$(command -v quarto || echo $(VENV)/bin/quarto)"; \
	elif timeout 180 $(VENV)/bin/pip install --disable-pip-version-check -q --timeout 15 --retries 0 quarto-cli >$(VENV)/quarto-cli.log 2>&1; then \
	  echo "setup: installed quarto-cli into $(VENV)"; \
	else echo "setup: Quarto is not on PATH and quarto-cli could not be installed (see $(VENV)/quarto-cli.log; it needs internet)."; \
	  echo "       make book will write an HTML preview; for the real book install Quarto (README.md)."; fi
	touch $@

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

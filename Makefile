# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup lint test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash .ci/need-gfortran
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "ablate needs Python 3.10-3.12 (escnn), found %d.%d: run make PYTHON=python3.11" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check ablate tests
	$(VENV)/bin/ruff format --check ablate tests
	$(VENV)/bin/lint-imports

# Lint first, then pytest. pytest exits 5 when it collected no test: that is a failure here, not a pass.
# Two pytest workers (pytest-xdist): the tests train at one thread, so a 2-core machine runs the
# suite in about 2/3 of the time (docs/speed.md).
test: setup lint
	$(PY) -m pytest -q -n 2; rc=$$?; if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# The quick study retrained from scratch into build/demo (the committed results/quick stays the
# reference to compare with); a second `make demo` finds every run finished and only reports.
DEMO := build/demo
demo: setup
	$(PY) -m ablate.run studies/quick.toml --results $(DEMO)/results
	$(PY) -m ablate.report --results $(DEMO)/results --study quick --out $(DEMO)/paper_figs

clean:
	rm -rf $(VENV) .pytest_cache build

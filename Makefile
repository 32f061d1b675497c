# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test test-fast demo quick report clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash .ci/need-gfortran
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "ablate needs Python 3.10-3.12 (escnn), found %d.%d: run make PYTHON=python3.11" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m ablate.run studies/quick.toml
	$(PY) -m ablate.report --study quick

clean:
	rm -rf $(VENV) .pytest_cache

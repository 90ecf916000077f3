# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN    ?= runs/demo

.PHONY: demo test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and exactly: a looser pin pulls CUDA builds.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[torch,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/diffcrit report --data digits --out $(RUN)
	@echo "open $(RUN)/report.md"

test: $(STAMP)
	$(PY) -m pytest -m "slow or not slow" -q

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

bench: $(STAMP)
	$(VENV)/bin/diffcrit bench --json

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info

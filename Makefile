# The README's two commands: `make demo` and `make test`. Both create the venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: venv demo test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

demo: venv
	$(BIN)/edgetl demo --out $(DEMO_OUT)

test: venv
	EDGETL_OFFLINE=1 $(BIN)/pytest -q -n 2 --dist loadfile

bench: venv
	$(BIN)/python benchmarks/transfer.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/quantization.py
	$(BIN)/python benchmarks/backends.py
	$(BIN)/python benchmarks/vs_benchmark_app.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info

# The README's two commands: `make demo` and `make test`. Both create the venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: venv espeak demo test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

# espeak-ng synthesizes the spoken-keyword data sets (Debian package); where it cannot be
# installed, the speech tests that need it skip and say why.
espeak:
	@command -v espeak-ng >/dev/null || apt-get install -y -q espeak-ng >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1) \
		|| echo "note: espeak-ng could not be installed (apt-get install espeak-ng); speech tests that need it skip"

demo: venv
	$(BIN)/edgetl demo --out $(DEMO_OUT)

test: venv espeak
	EDGETL_OFFLINE=1 $(BIN)/pytest -q -n 2 --dist loadfile

bench: venv
	$(BIN)/python benchmarks/transfer.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/quantization.py
	$(BIN)/python benchmarks/backends.py
	$(BIN)/python benchmarks/vs_benchmark_app.py
	$(BIN)/python benchmarks/speech.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info

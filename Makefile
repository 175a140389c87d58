# The README's two commands: `make demo` and `make test`. Both create the venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: venv device-venv espeak browser demo test test-avx2 bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

# A device as `pip install edgetl` makes it: the base install only (no torch, no
# OpenVINO). tests/test_bundle.py runs `verify` and `predict` in it.
DEVICE_VENV ?= .venv-device

device-venv: $(DEVICE_VENV)/.installed

$(DEVICE_VENV)/.installed: pyproject.toml $(shell find edgetl -name '*.py' 2>/dev/null)
	rm -rf $(DEVICE_VENV)
	$(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/pip install -q --upgrade pip
	$(DEVICE_VENV)/bin/pip install -q .
	rm -rf build
	touch $@

# espeak-ng synthesizes the spoken-keyword data sets (Debian package); where it cannot be
# installed, the speech tests that need it skip and say why.
espeak:
	@command -v espeak-ng >/dev/null || apt-get install -y -q espeak-ng >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1) \
		|| echo "note: espeak-ng could not be installed (apt-get install espeak-ng); speech tests that need it skip"

# Headless Chromium opens the evaluate report in a test (Debian package); where it cannot
# be installed, that test skips and says why.
browser:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
		|| echo "note: chromium could not be installed (apt-get install chromium); the report's browser test skips"

demo: venv
	$(BIN)/edgetl demo --out $(DEMO_OUT)

test: venv device-venv espeak browser
	$(BIN)/ruff check edgetl tests benchmarks
	$(BIN)/mypy
	EDGETL_OFFLINE=1 $(BIN)/pytest -q -n 2 --dist loadfile

# The suite as an AVX2-only CPU runs it, on a CPU with AVX-512: oneDNN, and with it
# OpenVINO's CPU plugin (measured: capping it changes OpenVINO INT8's roundings), runs no
# instruction above AVX2. An AVX2-only CPU cannot be made to run AVX-512 kernels.
test-avx2: venv device-venv espeak browser
	ONEDNN_MAX_CPU_ISA=AVX2 EDGETL_OFFLINE=1 $(BIN)/pytest -q -n 2 --dist loadfile

bench: venv
	$(BIN)/python benchmarks/transfer.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/quantization.py
	$(BIN)/python benchmarks/backends.py
	$(BIN)/python benchmarks/vs_benchmark_app.py
	$(BIN)/python benchmarks/speech.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build *.egg-info $(DEVICE_VENV)

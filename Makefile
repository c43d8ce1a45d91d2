# Make a virtual environment with the pinned CPU torch first (a bare `torch` requirement
# would pull several GB of CUDA packages), then the package with every extra. Where the
# package index serves CUDA builds of torch, name a CPU index:
#   make play TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=

.PHONY: install play test demo clean

install: $(BIN)/opengenie

$(BIN)/opengenie: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

play: install
	$(BIN)/opengenie play --model worlds/coinrun-small

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/opengenie demo --out out/demo

clean:
	rm -rf $(VENV) out

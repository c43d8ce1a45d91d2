# Make a virtual environment with the pinned CPU torch first (a bare `torch` requirement
# would pull several GB of CUDA packages), then the package: `make play` installs only what
# playing imports (the `play` extra), `make test` everything (the `dev` extra). Where the
# package index serves CUDA builds of torch, name a CPU index:
#   make play TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
# One torch thread: the bundled world's step is small, and on a CPU shared with other jobs
# torch's default thread count makes it several times slower (docs/play.md, Speed).
PLAY_THREADS ?= 1
PORT ?= 8000
# More `opengenie play` options, e.g. PLAY_ARGS="--maskgit-steps 4": fewer MaskGIT steps a
# frame than the world's 6, faster (`opengenie play --help` lists them).
PLAY_ARGS ?=

.PHONY: install play test demo clean

install: $(VENV)/.dev

$(VENV)/.play: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e ".[play]"
	touch $@

$(VENV)/.dev: $(VENV)/.play
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

play: $(VENV)/.play
	$(BIN)/opengenie play --model worlds/coinrun-wander --threads $(PLAY_THREADS) --port $(PORT) $(PLAY_ARGS)

# One torch thread per test process: on a CPU shared with other jobs, torch's default of one
# thread per core stalls small operations (threads wait on each other), several times slower.
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

demo: install
	$(BIN)/opengenie demo --out out/demo

clean:
	rm -rf $(VENV) out

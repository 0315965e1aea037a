# Common tasks. `make demo` and `make test` are the README's quickstart; .ci/run runs `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
GANFORGE := $(VENV)/bin/ganforge
DEMO := runs/demo

.PHONY: setup demo test test-fast quality style bench-quality bench-chaos bench-train bench-backends clean

setup: $(VENV)/.installed

# torch==2.13.0 first: it installs a CPU build from local disk; any other spec pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# the Triton Inference Server for the tests (only its binary is used; its Python package pins NumPy below 2)
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0
	touch $@

# train (1,500 steps of the digits recipe, about a minute) -> eval -> export (verified) -> sample -> a short benchmark
demo: setup
	rm -rf $(DEMO)
	$(GANFORGE) train --data digits --model dcgan --resolution 32 --steps 1500 --sample-every 500 --out $(DEMO)
	$(GANFORGE) eval $(DEMO) --n 2000 --quiet
	$(GANFORGE) export $(DEMO) --out $(DEMO)/generator.onnx --max-batch 256
	$(GANFORGE) sample $(DEMO)/generator.onnx --seeds 0-999 --out $(DEMO)/samples-npz
	$(GANFORGE) bench $(DEMO) --out $(DEMO)/bench --backends torch,onnxruntime,openvino --batch-sizes 1,64 \
		--scenarios offline,single-stream --min-duration 1 --quiet
	@echo "sample grid: $(DEMO)/samples/step-001500.png  loss curve: $(DEMO)/loss.png  quality: $(DEMO)/eval/eval.png  plots: $(DEMO)/bench/*.png"

# the whole suite in TEST_WORKERS processes (pytest-xdist; each computes on its share of the cores, a file at a time:
# pyproject.toml's addopts), the slowest tests listed at the end
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=25

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

quality: setup   # style, and the layers (import-linter's contracts in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests/test_layers.py

style: setup
	$(VENV)/bin/ruff check --fix .

bench-quality: setup
	$(PY) benchmarks/quality.py

bench-chaos: setup     # needs wrk (apt-get install wrk) for the server part
	$(PY) benchmarks/chaos.py

bench-train: setup
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

bench-backends: setup
	$(PY) benchmarks/backends_table.py

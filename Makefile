# Two commands on a fresh machine: `make up` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   := torch==2.13.0
# where torch comes from: the registry's default (cached CPU wheel on the project's machines); elsewhere on Linux
# TORCH_INDEX=https://download.pytorch.org/whl/cpu skips the CUDA packages the default wheel depends on
TORCH_INDEX ?=
STAMP   := $(VENV)/.installed

.PHONY: up test test-unit tflite lint typecheck bench clean proto wheel

# The install says what it is doing (step n of 4) and pip shows each download: a first install takes minutes.
PIP     := $(BIN)/pip install --progress-bar on --disable-pip-version-check

$(BIN)/python:
	@echo "==> [1/4] virtual environment in $(VENV), with a current pip"
	$(PY) -m venv $(VENV)
	@$(PIP) -q --upgrade pip

# torch first and pinned: any looser spec pulls several GB of CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml
	@echo "==> [2/4] $(TORCH), pinned (the largest download)"
	@$(PIP) $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@echo "==> [3/4] latfarm and its server, LiteRT and dev extras (editable; onnxruntime, FastAPI, SQLAlchemy ...)"
	@$(PIP) -e '.[server,litert,dev]'
	@echo "==> [4/4] installed: $(BIN)/latfarm"
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/latfarm up $(ARGS)

# The server's TFLite exporter (the tflite extra: litert-torch, ~0.9 GB, about a minute): CI installs it so the
# TFLite tests run. torch pinned in the same pip call: left free, pip may swap in an older CUDA torch (it does
# for '.[server,litert,dev,tflite]').
tflite: $(STAMP)
	@$(PIP) -e '.[tflite]' $(TORCH)

# pytest-xdist workers (2 cores: 2); TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS ?= 2

test: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup tests/unit tests/integration

# the fast loop: in-process tests only
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy on the `latfarm` namespace as installed: build/typecheck/latfarm/* link to the repository's folders
typecheck: $(STAMP)
	@mkdir -p build/typecheck/latfarm
	@for d in services agents predictor common; do ln -sfn "$$PWD/$$d" build/typecheck/latfarm/$$d; done
	@ln -sfn "$$PWD/proto/latfarm" build/typecheck/latfarm/proto
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p latfarm

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. proto/latfarm/v1/agent.proto
	# the stubs live in the installed namespace latfarm.proto (pyproject's package-dir)
	sed -i 's/\bproto\.latfarm\.v1\b/latfarm.proto.v1/g' proto/latfarm/v1/agent_pb2*.py*

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) .pytest_cache

# The agent-only install elsewhere: copy dist/latfarm-*.whl to the device, `pip install latfarm-*.whl`
wheel: $(BIN)/python
	$(BIN)/pip wheel -q --no-deps -w dist .

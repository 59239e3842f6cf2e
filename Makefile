# The task runner people and CI share. `make demo` and `make test` set up whatever is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
LLM_STAMP := $(VENV)/.installed-llm
# llama-cpp-python is sdist-only and its native build dies with "Illegal instruction" on these
# machines (docs/architecture.md#the-build-machines). pip caches the built wheel: the ~5 min build happens once a machine.
LLM_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install kafka lint format test test-unit test-integration test-chaos demo bench clean cluster test-cluster

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(LLM_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLM_CMAKE_ARGS)" $(BIN)/python -m pip install -q -e '.[llm]'
	@touch $(LLM_STAMP)

install: $(STAMP) ## Create .venv and install expediter with its dev tools

kafka: $(STAMP) ## Fetch the Kafka broker's jars from Maven Central into ~/.cache/expediter
	$(BIN)/expediter dev kafka fetch

lint: $(STAMP) ## ruff, mypy --strict and import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy expediter
	$(BIN)/lint-imports

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint kafka cluster $(LLM_STAMP) ## Lint, then the whole suite (unit, integration, e2e, chaos, cluster, slow) against a real broker
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## Only the tests that need no broker
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: kafka $(LLM_STAMP) ## Only the tests against a real broker
	$(BIN)/pytest tests/integration tests/e2e $(PYTEST_ARGS)

cluster: $(STAMP) ## Build the local Kubernetes + KEDA into the cache, once per machine (15-40 min cold, then instant)
	$(BIN)/expediter dev cluster build

test-cluster: kafka cluster ## Only the cluster tier: a real control plane and KEDA, against a real broker
	$(BIN)/pytest tests/cluster $(PYTEST_ARGS)

test-chaos: kafka ## Only the chaos tier: broker outages, poison and bad input on a broker of its own
	$(BIN)/pytest tests/chaos $(PYTEST_ARGS)

demo: kafka ## Bring up a broker, run the main job, stop the broker
	$(BIN)/expediter demo

bench: kafka $(LLM_STAMP) ## Run the benchmarks (bench_llm.py needs the [llm] extra); each prints its ratio as its last JSON line
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: ## Remove the venv, caches and the local broker's state (stops it first)
	-@test -x $(BIN)/expediter && $(BIN)/expediter dev kafka stop
	-@test -x $(BIN)/expediter && $(BIN)/expediter dev cluster stop
	rm -rf $(VENV) .expediter .pytest_cache .mypy_cache .ruff_cache *.egg-info

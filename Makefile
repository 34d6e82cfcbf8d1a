# The two set-up commands are `make run` and `make test`; everything else is here too.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install run test migrate seed check routes bench bench-mixed lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the engine with its test tools

run: $(STAMP) ## migrate, load the demo seeds and serve on ENGINE_HOST:ENGINE_PORT
	$(BIN)/python -m engine serve --migrate --seed

test: $(STAMP) ## the whole suite against a real PostgreSQL
	$(BIN)/python -m pytest $(PYTEST_ARGS)

migrate: $(STAMP) ## apply pending sql/ migrations
	$(BIN)/python -m engine migrate

seed: $(STAMP) ## load seed domains: make seed DOMAINS="camera_counting"
	$(BIN)/python -m engine seed $(DOMAINS)

check: $(STAMP) ## report mapping rows that cannot be served
	$(BIN)/python -m engine check

routes: $(STAMP)
	$(BIN)/python -m engine routes

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

# every script runs even when one misses a target; the exit status says whether any did
bench: $(BENCH_STAMP) ## the engine against Starlette, FastAPI and pgbench as ratios (bench/results/); BENCH_ARGS="--only S1,S2"
	@status=0; \
	$(BIN)/python bench/run.py $(BENCH_ARGS) || status=1; \
	$(BIN)/python bench/wfm.py || status=1; \
	$(BIN)/python bench/observers.py || status=1; \
	$(BIN)/python bench/mixed.py || status=1; \
	$(BIN)/python bench/export.py || status=1; \
	$(BIN)/python bench/bulk.py || status=1; \
	$(BIN)/python bench/catalog_scale.py || status=1; \
	$(BIN)/python bench/instructions.py || status=1; \
	exit $$status

bench-mixed: $(STAMP) ## 60 s of mixed load through wrk: zero 5xx, RSS flat (bench/results/mixed.json)
	$(BIN)/python bench/mixed.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The two commands of the README: `make serve` and `make test`. Each bootstraps .venv on first use and is
# idempotent: the install step re-runs only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LONGRANK_HOST ?= 127.0.0.1
LONGRANK_PORT ?= 8000
export LONGRANK_HOST LONGRANK_PORT

.PHONY: serve test lint bench clean-venv stack compose-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip -c constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,load]'
	# MovieLens-100K ships inside the recbole wheel; its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt recbole==1.2.1
	touch $(STAMP)

# Without LONGRANK_ARTIFACT, serve the demo: MovieLens-100K, a sim_can model trained on it, its ratings ingested
# into the store (built on first use; later runs skip what exists). The demo's actions are ratings 1-5.
serve: $(STAMP)
	@if [ -z "$$LONGRANK_ARTIFACT" ]; then \
		$(BIN)/longrank demo --if-missing && \
		LONGRANK_ARTIFACT=var/demo/artifact LONGRANK_ACTIONS=$${LONGRANK_ACTIONS:-[0,1,2,3,4,5]} \
			exec $(BIN)/longrank serve --host $(LONGRANK_HOST) --port $(LONGRANK_PORT); \
	else \
		exec $(BIN)/longrank serve --host $(LONGRANK_HOST) --port $(LONGRANK_PORT); \
	fi

test: $(STAMP)
	@scripts/ensure-browser.sh
	scripts/with-redis.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check retrieval models serving loadtest cli bench stack tests
	$(BIN)/mypy

bench: $(STAMP)
	scripts/with-redis.sh sh -c '$(BIN)/longrank bench store --json && $(BIN)/longrank bench gsu --json && $(BIN)/longrank bench model --json'

# docker-compose.yml's topology as local processes: redis-server with docker/redis.conf (port 6390, files in
# var/stack/redis), the bootstrap (ml100k -> sim_can -> ingest; skipped when done), and STACK_WORKERS ranker
# workers on LONGRANK_PORT. Ctrl-C stops everything.
STACK_WORKERS ?= 2
stack: $(STAMP)
	$(BIN)/python -m stack.run --workers $(STACK_WORKERS) --port $(LONGRANK_PORT) $(STACK_ARGS)

# docker-compose.yml for real (stack/compose_check.py): a container engine (installed and started when none runs and
# we are root), the images built, the stack up and checked through ports on 127.0.0.1, then everything it started
# removed (images stay cached). Each step prints its time. COMPOSE_CHECK_ARGS: see `python -m stack.compose_check -h`.
compose-check: $(STAMP)
	$(BIN)/python -m stack.compose_check $(COMPOSE_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)

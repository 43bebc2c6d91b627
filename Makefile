# One command per routine task. Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The exact, hashed set of dependencies every install gets (dev tools included); `make lock` writes it.
LOCK := requirements/lock.txt

.PHONY: run test lint bench install lock emulator migrate clean

run: $(STAMP) .env ## Start web, worker, beat and the Segment emulator (Ctrl-C stops all)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py create_demo
	$(BIN)/honcho --procfile Procfile.dev start

test: $(STAMP) ## Run the whole suite (PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set)
ifeq ($(findstring not browser,$(PYTEST_ARGS)),)
	scripts/ensure-chromium
endif
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy and the import contracts (pyproject.toml: floors, no cycles)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo --no-cache
	$(BIN)/mypy .

bench: $(STAMP) ## Benchmarks that print figures (relay, dashboard: need PostgreSQL and Redis on 127.0.0.1; BENCH_ARGS=--quick for the relay, PARTITIONS_BENCH_ARGS=--quick for retention on the partitioned log, WEBHOOKS_BENCH_ARGS=--quick for webhooks, FAIRNESS_BENCH_ARGS=--quick for fairness, MULTINODE_BENCH_ARGS for the multi-node run, DASHBOARD_BENCH_ARGS="--quick --keep" for the dashboard)
	$(BIN)/python bench/emulator.py
	$(BIN)/python bench/relay.py $(BENCH_ARGS)
	$(BIN)/python bench/partitions.py $(PARTITIONS_BENCH_ARGS)
	$(BIN)/python bench/webhooks.py $(WEBHOOKS_BENCH_ARGS)
	$(BIN)/python bench/fairness.py $(FAIRNESS_BENCH_ARGS)
	$(BIN)/python bench/multinode.py $(MULTINODE_BENCH_ARGS)
	$(BIN)/python bench/dashboard.py $(DASHBOARD_BENCH_ARGS)

# The demo workspace's write keys (create_demo), known to every emulator `make run` (Procfile.dev)
# or `make emulator` starts: the US one is connected, the EU one is there to paste. The Public
# API tokens of the EU workspace (an owner's, and one without Source Admin) pick its source; the
# US owner's reads the connected US source.
DEMO_KEYS := --register demoUSproductionWriteKey2026:us --register demoEUstagingWriteKey2026:eu --public-token demoSegmentPublicApiToken2026:owner:eu --public-token demoReadOnlyPublicApiToken2026:read_only:eu --public-token demoSegmentPublicApiTokenUS2026:owner:us --source-name demoUSproductionWriteKey2026=Production --source-name "demoEUstagingWriteKey2026=Staging (EU)"

emulator: $(STAMP) ## Only the local Segment emulator (US :9100, EU :9101), knowing the demo keys
	$(BIN)/python -m segment_emulator --host 127.0.0.1 --us-port 9100 --eu-port 9101 $(DEMO_KEYS)

install: $(STAMP) ## Create .venv with the locked dependencies and the project

# Only the hashed, locked set, so a fresh install is the set CI tested. `pip check` fails when
# pyproject.toml asks for something the lock lacks: run `make lock`.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

lock: ## Re-resolve requirements/lock.txt after editing pyproject.toml (LOCK_ARGS=--upgrade takes newer releases)
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install --quiet uv; }
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 \
		--custom-compile-command 'make lock' --quiet --output-file $(LOCK) $(LOCK_ARGS)

# Local secrets, generated once per clone and git-ignored. Production sets real ones.
.env:
	@$(PYTHON) -c 'import base64, secrets; \
	print("DJANGO_SECRET_KEY=" + secrets.token_urlsafe(50)); \
	print("FIELD_ENCRYPTION_KEYS=" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())' > .env
	@echo "Wrote .env with a fresh local secret key and encryption key."

clean:
	rm -rf $(VENV) var staticfiles artifacts .pytest_cache .mypy_cache .ruff_cache

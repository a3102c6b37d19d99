# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
# `make up`, `make down` and `make logs` run the compose stack; `make help` lists every target.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The docker client's compose plugin, else Debian's docker-compose. Looked up when used only.
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo docker compose; \
	else echo docker-compose; fi)
# The files docker-compose.yml gives the containers as Docker secrets.
SECRETS := secrets/secret_key secrets/postgres_password secrets/mail_url secrets/metrics_token \
	secrets/grafana_admin_password

# Tests about dates and clocks run a second time with the clock 400 days ahead (Debian's
# faketime), so that none of them passes only near the day it was written.
CLOCK_AHEAD_TESTS := tests/test_clock.py tests/system/test_cli_digest.py tests/delivery/test_digest.py \
	tests/delivery/test_planning.py tests/delivery/test_schedule.py tests/signup/test_tokens.py \
	tests/signup/test_subscriptions.py tests/web/test_web.py tests/system/test_tasks.py tests/mail/test_emails.py \
	tests/web/test_feedback.py tests/web/test_web_papers.py tests/signup/test_seeds.py \
	tests/signup/test_feedback.py tests/delivery/test_digest_feedback.py tests/web/test_archive_feed.py \
	tests/web/test_feed_only.py tests/system/test_cli_archive.py tests/web/test_manage_profiles.py \
	tests/system/test_cli_profiles.py::test_digest_run_sends_a_section_per_profile_each_paper_once \
	tests/system/test_cli_profiles.py::test_five_profiles_of_thirty_papers_stay_under_the_size_cap \
	tests/system/test_cli_bounces.py tests/inbound/test_receiver.py

.PHONY: demo test test-clock-ahead lint typecheck format clean help up down logs secrets

demo: $(VENV)/.installed-runtime ## Try it: sample papers, a subscriber, a digest in var/outbox
	$(BIN)/paperwire demo

# Two processes, a test file each at a time (fixtures stay per file): many tests wait on
# workers, relays and subprocesses rather than on a core.
PYTEST_PARALLEL := -n 2 --dist loadfile

test: $(VENV)/.installed-test lint typecheck ## Lint, type-check and run every test
	$(BIN)/pytest $(PYTEST_PARALLEL)
	@$(MAKE) --no-print-directory test-clock-ahead

lint: $(VENV)/.installed-test ## ruff format --check and ruff check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test ## mypy, strict
	$(BIN)/mypy

# In CI (CI=true) a missing faketime is a failure; elsewhere this run is skipped with a note.
test-clock-ahead: $(VENV)/.installed-test ## The date and clock tests again, 400 days ahead
	@if command -v faketime >/dev/null; then \
		echo "faketime '+400 days': $(CLOCK_AHEAD_TESTS)"; \
		PAPERWIRE_TEST_REAL_DATE=$$(date -u +%F) faketime '+400 days' \
			$(BIN)/pytest -p no:cacheprovider $(PYTEST_PARALLEL) $(CLOCK_AHEAD_TESTS); \
	elif [ "$$CI" = "true" ]; then \
		echo "faketime is missing: the clock-ahead run cannot be skipped in CI" >&2; exit 1; \
	else \
		echo "faketime is not installed (apt-get install faketime): clock-ahead run skipped"; \
	fi

format: $(VENV)/.installed-test ## ruff format and ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-17s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# -- The compose stack (README, "Running in production") ------------------------------------

up: secrets ## Build the image and start the compose stack (needs .env)
	@test -f .env || { echo "no .env: cp .env.example .env, then change the lines marked CHANGE ME" >&2; exit 1; }
	$(COMPOSE) up -d --build

down: ## Stop the compose stack (its volumes, the data, stay)
	$(COMPOSE) down

logs: ## Follow the compose stack's logs
	$(COMPOSE) logs --follow --tail=100

# Random ones where none exist; an existing file is never changed. The folder is the
# operator's alone; the files are readable by the containers' users (paperwire and postgres),
# since Compose mounts them as they are.
secrets: $(SECRETS) ## Make the secret files the stack reads (secrets/), keeping existing ones

secrets/secret_key secrets/postgres_password secrets/metrics_token secrets/grafana_admin_password:
	@mkdir -p secrets && chmod 700 secrets
	$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $@ && chmod 644 $@

secrets/mail_url:
	@mkdir -p secrets && chmod 700 secrets
	echo 'smtp://mailpit:1025' > $@ && chmod 644 $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-runtime

clean: ## Remove the venv, var/ and the caches (never secrets/)
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

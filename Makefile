# The two commands: `make run` and `make test`. Everything they need is installed from here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The Asterisk 22 root (Debian sid, debootstrap), cached between runs outside the work tree.
ASTERISK_ROOT ?= /var/cache/agi-daemon/asterisk-root
export AGI_DAEMON_ASTERISK_ROOT := $(ASTERISK_ROOT)
# Development secrets for `make run` only; production sets its own in the environment.
export AGI_DAEMON_AMI_SECRET ?= dev-ami-secret
export AGI_DAEMON_ARI_PASSWORD ?= dev-ari-password

.PHONY: run test lint venv sandbox browser postgresql systemd-tools demo bench fuzz check-config clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

sandbox:
	bash scripts/asterisk-sandbox.sh "$(ASTERISK_ROOT)"

# Debian's chromium, for the web tests (headless, driven by Playwright through executable_path).
browser:
	bash scripts/browser-sandbox.sh

# Debian's PostgreSQL server, for the tests that run the CRM on PostgreSQL: they start their
# own cluster (initdb in a temp dir, 127.0.0.1, an ephemeral port), never the package's.
postgresql:
	bash scripts/postgresql-sandbox.sh

# systemd-analyze, which checks contrib/agi-daemon.service in the tests (nothing is started).
systemd-tools:
	bash scripts/systemd-tools.sh

# Development: var/dev.yaml is config/agi-daemon.yaml with FastAGI on 127.0.0.1:14573 (never
# the production 4573 the PBX's dialplan calls) and the CRM in var/dev-crm.sqlite3.
run: venv
	$(BIN)/python scripts/dev_config.py var/dev.yaml
	$(BIN)/agi-daemon check-config -c var/dev.yaml
	exec $(BIN)/agi-daemon run -c var/dev.yaml

test: lint sandbox browser postgresql systemd-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Types (mypy, strict on core/) and lint (ruff), configured in pyproject.toml; part of `make test`.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# The sandboxed Asterisk, the daemon and a scripted caller: open the printed URL and log in.
demo: venv sandbox
	$(BIN)/python scripts/demo.py

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# The full benchmark (about ten minutes; a million contacts): the table it prints and
# bench/results.json. `python -m bench --quick` is the small run the test suite makes.
bench: venv sandbox $(BIN)/.bench-installed
	$(BIN)/python -m bench

# The fault suite's properties (AGI codec and server, AMI translation, settings loader) with
# 5,000 examples each instead of 200 (FUZZ_EXAMPLES overrides): a minute or two on two cores.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/faults/test_properties.py

check-config: venv
	$(BIN)/agi-daemon check-config -c config/agi-daemon.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

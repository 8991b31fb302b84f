# guardrail-authz: the ext_authz gRPC service (and the demo upstream, same image).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY guardrail_authz ./guardrail_authz
COPY envoy ./envoy
RUN pip install . && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin guardrail
USER 10001

# gRPC (Envoy calls Check here) and ops HTTP (/healthz, /readyz, /metrics).
EXPOSE 9191 9192
ENTRYPOINT ["guardrail-authz"]
CMD ["serve", "--policies", "/policies", "--grpc", "0.0.0.0:9191", "--http", "0.0.0.0:9192"]

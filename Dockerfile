# The product image (the last stage, what `docker build .` makes): the gateway package only, no
# dev kit, bench or tests. The `devkit` stage adds the mock upstream for docker-compose's target.
FROM python:3.11-slim AS base
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# pg_dump and pg_restore for `tollgate backup` / `restore` (the same major version as compose's PostgreSQL).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY ledger ./ledger
COPY admin_ui ./admin_ui
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system --no-create-home tollgate

FROM base AS devkit
COPY devkit ./devkit
USER tollgate
CMD ["python", "-m", "devkit", "mock-upstream", "--host", "0.0.0.0", "--port", "9000"]

FROM base AS gateway
USER tollgate
ENV TOLLGATE_HOST=0.0.0.0 TOLLGATE_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
CMD ["sh", "-c", "tollgate migrate && exec tollgate serve --workers ${TOLLGATE_WORKERS:-2}"]

FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY ledger ./ledger
COPY admin_ui ./admin_ui
COPY migrations ./migrations
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --system --no-create-home tollgate
USER tollgate
ENV TOLLGATE_HOST=0.0.0.0 TOLLGATE_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
CMD ["sh", "-c", "tollgate migrate && exec tollgate serve --workers ${TOLLGATE_WORKERS:-2}"]

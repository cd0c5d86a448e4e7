# walletflow's image: the API, the worker and the one-shot jobs all run the `walletflow` CLI.
#   docker build -t walletflow .
#   docker run walletflow api --host 0.0.0.0      (or: worker, db upgrade, schedules apply)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first (a layer that survives code changes), then the code.
COPY pyproject.toml README.md ./
COPY walletflow ./walletflow
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app walletflow
USER walletflow

# API 8000, worker metrics 9464.
EXPOSE 8000 9464
ENTRYPOINT ["walletflow"]
CMD ["api", "--host", "0.0.0.0"]

# canaryflow worker image: `canaryflow worker` against the Temporal cluster named by TEMPORAL_ADDRESS.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/canaryflow
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY canaryflow canaryflow
COPY workflows workflows
COPY activities activities
COPY workers workers
RUN uv sync --locked --no-dev && useradd --uid 10001 --no-create-home canaryflow
USER 10001
ENV PATH=/opt/canaryflow/bin:$PATH
EXPOSE 9466
ENTRYPOINT ["canaryflow"]
CMD ["worker"]

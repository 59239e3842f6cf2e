# The Expediter runtime image: the orchestrator, the agent workers and the CLI.
# Slim base, no compilers left behind, and a non-root user (UID 10001) as Kubernetes'
# runAsNonRoot expects. The [llm] extra is left out here; the gpu overlay builds its own image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY expediter ./expediter
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN groupadd --gid 10001 expediter \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin expediter
COPY --from=build /install /usr/local
WORKDIR /app
COPY --chown=10001:10001 agents ./agents
COPY --chown=10001:10001 topics ./topics
COPY --chown=10001:10001 schemas ./schemas
COPY --chown=10001:10001 workflows ./workflows
ENV PYTHONUNBUFFERED=1 \
    EXPEDITER_DEV_DIR=/tmp/expediter
USER 10001:10001
ENTRYPOINT ["expediter"]
CMD ["--help"]

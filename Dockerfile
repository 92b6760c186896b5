# syntax=docker/dockerfile:1
# notifier's image: the daemon (`notifier run`, the default) and, with another entrypoint, the sandbox
# platforms (`python -m notifier.sandbox`). docker-compose.yml builds it for both; docs/deployment.md.
#
# Two stages: the builder installs the pinned, hash-checked dependencies of requirements.lock into a
# virtual environment and notifier itself into it; the final image copies only that environment and
# the configuration, and runs as an unprivileged user with a fixed uid.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a change to notifier's code reuses this layer. Wheels only: the slim image
# has no compiler, and a missing wheel should fail here by name rather than half-way through a build.
# The lock is compiled with the dev extra (`make lock`), so the test tools come along: harmless, only
# larger.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY notifier ./notifier
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}
# A fixed uid, so the volume's files keep their owner across rebuilds and orchestrators that insist
# on a numeric non-root user (Kubernetes' runAsNonRoot) can check it.
RUN groupadd --system --gid 10001 notifier \
 && useradd --system --uid 10001 --gid notifier --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin notifier
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NOTIFIER_CONFIG=/app/config/docker.toml
WORKDIR /app
# config/ as in the repository (docker.toml, notifier.toml), owned by root: the daemon
# reads it and cannot change it. var/ beside it is the daemon's own (manual outbox; the SQLite files
# of the embedded default), kept on a volume.
COPY config/ /app/config/
RUN mkdir -p /app/var \
 && chown notifier:notifier /app/var \
 && chmod 0700 /app/var
VOLUME ["/app/var"]
USER 10001:10001
# http.listen and inbound_smtp.listen of config/docker.toml.
EXPOSE 8080 2525
# No curl in the slim image: the venv's python asks /healthz (process alive) on http.listen's port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["notifier"]
CMD ["run"]

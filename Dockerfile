# streamdrift worker image: `docker run streamdrift` runs a worker; any other
# subcommand works too (`docker run streamdrift topics create`, `... demo`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so editing tests or deploy/ does not rebuild.
# gcc builds decode's C reader (streamdrift.core._speedups) and leaves with the build.
WORKDIR /tmp/build
COPY pyproject.toml setup.py ./
COPY src ./src
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && python -c "import streamdrift.core._speedups" \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* /tmp/build

# Non-root; the snapshot directory exists and is owned by that user, so a named
# volume mounted there starts with the right owner.
RUN groupadd --system --gid 10001 streamdrift \
    && useradd --system --uid 10001 --gid streamdrift --home-dir /var/lib/streamdrift --shell /usr/sbin/nologin streamdrift \
    && mkdir -p /var/lib/streamdrift/snapshots \
    && chown -R streamdrift:streamdrift /var/lib/streamdrift

# Container defaults: the metrics endpoint must listen beyond loopback to be
# scraped or port-published, so /status (model ids, feature names, segment
# values, offsets; no access control) is off: turn it on with
# STREAMDRIFT_STATUS_ENDPOINT=true only where the port is not reachable by others.
# Snapshots go under the user's directory.
ENV STREAMDRIFT_METRICS_HOST=0.0.0.0 \
    STREAMDRIFT_METRICS_PORT=9108 \
    STREAMDRIFT_STATUS_ENDPOINT=false \
    STREAMDRIFT_SNAPSHOT_DIR=/var/lib/streamdrift/snapshots

USER streamdrift
WORKDIR /var/lib/streamdrift
EXPOSE 9108

ENTRYPOINT ["streamdrift"]
CMD ["worker"]

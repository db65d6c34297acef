# northstar: one image for every subcommand (worker, api, simulate, replay, ...).
#
#   docker build -t northstar:0.1.0 .
#   docker run --rm northstar:0.1.0 validate          # the definitions baked into the image
#   docker run --rm -v "$PWD/definitions:/app/definitions:ro" northstar:0.1.0 tree /app/definitions/education.yaml
#
# The definitions in /app/definitions are the repository's at build time; deployments
# mount their own there (read-only) and set NORTHSTAR_DEFINITIONS='["/app/definitions"]'.
# See docs/operating.md.

# ---- build: wheels for the package and every dependency
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamer ./streamer
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: the installed package, no compiler, no sources, not root
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# the wheels are bind-mounted from the build stage, so they never land in a layer
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels northstar-streamer \
    && groupadd --system --gid 10001 northstar \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin northstar

WORKDIR /app
# owned by root: the northstar user can read the definitions, not change them
COPY definitions ./definitions

# numeric, so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001

# 8080: `northstar api` (JSON API, /metrics with the tree metrics, /healthz)
# 9464: `northstar worker` operational /metrics (NORTHSTAR_METRICS_PORT)
EXPOSE 8080 9464

ENTRYPOINT ["northstar"]
CMD ["--help"]

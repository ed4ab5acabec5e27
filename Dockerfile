# One image for every service of docker-compose.yml: worker, flower, callbacks, simulator and
# the demo's one-shot producer. No secret is baked in: every setting comes from the environment
# at run time (see .env.example), and .dockerignore keeps .env out of the build context.

# --- build: `pip install .` into a virtualenv -------------------------------------------------
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# README.md* is optional (pyproject names it as the readme; the build only warns without it).
COPY pyproject.toml README.md* ./
COPY config ./config
COPY callq ./callq
COPY worker ./worker
COPY producer ./producer
COPY simulator ./simulator
COPY callbacks ./callbacks
COPY devstack ./devstack
RUN pip install .

# --- run: the virtualenv, the example campaign, a user without privileges -------------------
FROM python:3.11.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 callq \
    && useradd --system --uid 10001 --gid callq --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin callq

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY examples ./examples

USER callq:callq

# docker-compose.yml sets each service's command; alone, the image runs a worker.
CMD ["celery", "-A", "worker", "worker", "-Q", "calls", "--pool", "threads", "--loglevel", "INFO"]

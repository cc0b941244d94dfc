# syntax=docker/dockerfile:1
# The Retarget Suppressor worker image: `docker build -t retarget-suppressor:0.1.0 .`
#   docker run retarget-suppressor:0.1.0                  the Faust worker (CMD worker)
#   docker run retarget-suppressor:0.1.0 topics           create the topics
#   docker run -v $PWD:/data retarget-suppressor:0.1.0 replay /data/events.jsonl
# Settings: SUPPRESSOR_* environment variables (suppressor worker --help).

# --- build: install the package and its pinned dependencies into a venv ---------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/suppressor
ENV PATH=/opt/suppressor/bin:$PATH
WORKDIR /src
# dependencies first (a layer cached while only the code changes), exactly as pinned:
# [project] dependencies of pyproject.toml, constrained by constraints.txt
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --quiet pip==24.3.1 \
 && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && pip install --quiet -c constraints.txt -r requirements.txt
COPY suppressor ./suppressor
RUN pip install --quiet --no-deps -c constraints.txt . \
 && pip check \
 && suppressor --help > /dev/null

# --- runtime: the venv on a slim base, as an unprivileged user -------------------------
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="retarget-suppressor" \
      org.opencontainers.image.description="Faust stream processor: suppresses creepy retargeting triggers, emits only basket-recovery and similar-item actions"
RUN groupadd --system --gid 10001 suppressor \
 && useradd --system --uid 10001 --gid suppressor --home-dir /home/suppressor \
      --create-home --shell /usr/sbin/nologin suppressor \
 && mkdir -p /var/lib/suppressor /etc/suppressor \
 && chown suppressor:suppressor /var/lib/suppressor
COPY --from=build /opt/suppressor /opt/suppressor
COPY examples/policy.toml /etc/suppressor/policy.toml
ENV PATH=/opt/suppressor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SUPPRESSOR_DATA_DIR=/var/lib/suppressor \
    SUPPRESSOR_WEB_PORT=6066
USER 10001:10001
WORKDIR /home/suppressor
# RocksDB tables (changelog-backed: losing them costs a recovery, not data)
VOLUME ["/var/lib/suppressor"]
# /metrics, /health (ready), /health/live (alive)
EXPOSE 6066
# The worker stops gracefully on SIGTERM (commit, leave the group, close RocksDB).
STOPSIGNAL SIGTERM
ENTRYPOINT ["suppressor"]
CMD ["worker"]

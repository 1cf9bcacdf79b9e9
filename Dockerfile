# syntax=docker/dockerfile:1
# One image for every mlgitops process: the operator (`mlgitops operator`, port 8080), the model
# server (`mlgitops serve`, port 8000) and the batch/monitor jobs. Build from the repository root:
#   docker build -t ghcr.io/mlgitops/mlgitops:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a self-contained virtualenv at /opt/venv, pinned by constraints.txt ----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (the slow, large layer: mlflow, scikit-learn, pandas), so that code changes
# reuse it: the runtime dependencies of pyproject.toml, at the versions in constraints.txt.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt
# Then the project itself (not editable: the runtime stage has no source tree).
COPY README.md ./
COPY controller ./controller
RUN pip install -c constraints.txt . \
 && pip check

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# git for the config and training repositories (GitPython shells out to it); openssh-client for
# ssh:// repository URLs. No recommended packages.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it; matches runAsUser 10001 in
# manifests/base/deployment.yaml.
RUN groupadd --system --gid 10001 mlgitops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/mlgitops --create-home \
      --shell /usr/sbin/nologin mlgitops \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mlgitops
COPY --from=builder /opt/venv /opt/venv
# The venv's bin must be on PATH: `mlflow models serve` shells out to uvicorn. matplotlib (the
# monitoring report's charts) keeps its font cache in MPLCONFIGDIR: the pods' root filesystem is
# read-only and /tmp an emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GIT_TERMINAL_PROMPT=0 \
    MLGITOPS_STATE_DIR=/var/lib/mlgitops \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/mlgitops
USER 10001:10001
# 8080: operator (metrics, health, webhook); 8000: model server.
EXPOSE 8080 8000
ENTRYPOINT ["mlgitops"]
CMD ["operator", "--help"]

# syntax=docker/dockerfile:1
# openpersonalize images. Two targets, both run the `personalize` console script:
#   docker build --target serving -t openpersonalize:0.1.0 .          # API + stream workers, no torch
#   docker build --target trainer -t openpersonalize-trainer:0.1.0 .  # `personalize trainer --schedule`, torch (CPU)
# `serving` is the last stage, so a plain `docker build .` builds it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the package and its dependencies in /opt/venv (no torch) ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# dependencies first, from pyproject.toml alone, so a code change does not reinstall them
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY kernel ./kernel
COPY stream ./stream
COPY serving ./serving
COPY training ./training
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/pip check

# --- build-trainer: the same venv plus the `train` extra, torch from the CPU-only index ------
FROM build AS build-trainer
# PyPI's Linux torch is the CUDA build (several GB with its nvidia-* wheels); the CPU wheel is
# enough. Installed first, it satisfies the extra's torch requirement; the rest comes from PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.4" \
    && /opt/venv/bin/pip install ".[train]" \
    && /opt/venv/bin/pip check

# --- runtime: what both images share --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# one intra-op thread: numpy/onnxruntime pools oversubscribe small machines (docs/architecture.md, "Threads")
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    OPZ_HOST=0.0.0.0 OPZ_PORT=8080 OPZ_DATA_DIR=/data
RUN groupadd --system --gid 10001 opz \
    && useradd --system --uid 10001 --gid opz --home-dir /data --no-create-home opz \
    && mkdir /data && chown opz:opz /data
COPY --chmod=755 scripts/healthcheck.py /usr/local/bin/opz-healthcheck
WORKDIR /data
VOLUME ["/data"]

# --- trainer: `personalize trainer --schedule` ----------------------------------------------
FROM runtime AS trainer
COPY --from=build-trainer /opt/venv /opt/venv
USER 10001:10001
ENTRYPOINT ["personalize"]
CMD ["trainer", "--schedule"]

# --- serving (default): `personalize serve`; the stream workers run `personalize stream worker` ---
FROM runtime AS serving
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["personalize"]
CMD ["serve"]

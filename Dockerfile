# gigasynth: the synthesis service (and, with another entry point, a GPU Dask worker).
#   docker build -t gigasynth .
#   docker run --gpus all -p 127.0.0.1:8000:8000 -v gigasynth-data:/data gigasynth
# Tokens: docker run --rm -v gigasynth-data:/data --entrypoint gigasynth gigasynth \
#             token create --name NAME
# The job store (SQLite) is in /data unless GIGASYNTH_STORE_DIR names another local volume
# (deploy/ mounts one at /store: job outputs there may be on a network share, the store not).

# OpenSeadragon for the viewer, from the npm registry as pinned by package-lock.json.
FROM node:20-bookworm-slim AS viewer-assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GIGASYNTH_HOST=0.0.0.0 \
    GIGASYNTH_PORT=8000 \
    GIGASYNTH_DATA_DIR=/data \
    GIGASYNTH_OPENSEADRAGON_DIR=/app/node_modules/openseadragon/build/openseadragon
WORKDIR /app
# Dependencies first (the CUDA build of torch comes from PyPI's Linux wheels).
COPY pyproject.toml setup.py README.md ./
COPY gigasynth ./gigasynth
COPY service ./service
RUN pip install --no-cache-dir .
COPY --from=viewer-assets /assets/node_modules/openseadragon/build/openseadragon \
     /app/node_modules/openseadragon/build/openseadragon
RUN useradd --system --uid 10001 --home-dir /data gigasynth \
    && mkdir -p /data /store && chown gigasynth /data /store
USER gigasynth
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GIGASYNTH_PORT', '8000') + '/healthz', timeout=4)"
ENTRYPOINT ["gigasynth", "serve"]

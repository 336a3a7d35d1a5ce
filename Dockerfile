# composer on a CUDA runtime. Build:  docker build -t composer .
# Run (see README; create model-cache/ and output/ first, or Docker creates them owned by root):
#   mkdir -p model-cache output && docker run --gpus all -v "$PWD/model-cache:/cache" -v "$PWD/output:/work/output" \
#                      -v "$PWD/arrangements:/work/arrangements" composer generate --style industrial-ebm ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG EXTRAS=""
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache \
    AUDIOCRAFT_CACHE_DIR=/cache \
    PATH=/opt/venv/bin:$PATH

# Unpinned on purpose: the distribution's security updates matter more than byte-identical images.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /app
# Dependencies first (from pyproject.toml), so code edits do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir composer && touch composer/__init__.py \
 && pip install "torch==${TORCH_VERSION}" \
 && pip install -e ".${EXTRAS:+[$EXTRAS]}"
COPY composer ./composer
COPY styles ./styles
COPY arrangements ./arrangements
COPY tests ./tests

# Non-root user with UID 1000 (the usual first user on the host, so bind-mounted folders stay
# writable); Ubuntu 24.04 images already have "ubuntu" with that UID, so it goes first.
# /cache holds model weights (HF cache layout), /work/output the renders.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
 && useradd --create-home --uid 1000 composer \
 && mkdir -p /cache /work/output \
 && chown -R composer:composer /cache /work /app
USER 1000:1000
WORKDIR /work
VOLUME ["/cache", "/work/output"]
ENTRYPOINT ["compose"]
CMD ["--help"]

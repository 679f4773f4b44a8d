# The project image: the KFP components' base image (and a shell for `esrgan` / `dvc`).
#   docker build --build-arg VARIANT=cuda -t ghcr.io/owner/esrgan-pipeline:0.1.0-cuda .   # training
#   docker build --build-arg VARIANT=cpu  -t ghcr.io/owner/esrgan-pipeline:0.1.0-cpu  .   # the rest
# cuda: PyPI's torch==2.14.1 wheel, which bundles the CUDA runtime and cuDNN as nvidia-* wheels, so
# the node needs only the NVIDIA driver (no nvidia/cuda base image, no toolkit in the image).
# cpu: the same pins, with torch/torchvision taken from PyTorch's CPU index (+cpu local versions
# satisfy constraints.txt's ==2.14.1), a few hundred MB instead of several GB.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# torch first (the layer that changes least); the CPU variant from the CPU-only index.
RUN case "${VARIANT}" in \
      cpu) pip install -c constraints.txt --index-url "${TORCH_CPU_INDEX}" torch torchvision ;; \
      cuda) pip install -c constraints.txt torch torchvision ;; \
      *) echo "VARIANT must be cpu or cuda, got ${VARIANT}" >&2; exit 1 ;; \
    esac
COPY pyproject.toml README.md ./
COPY esrgan ./esrgan
COPY pipeline ./pipeline
COPY components ./components
# A regular (non-editable) install: the image needs no source tree. kfp is in the `pipeline`
# extra, which is why the components use install_kfp_package=False.
RUN pip install -c constraints.txt ".[pipeline,metrics]" \
    && python -c "import esrgan, pipeline.steps, pipeline.kfp.build, kfp, mlflow, dvc"

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cuda
# Runs record the code they ran (no .git in the image): --build-arg GIT_COMMIT=$(git rev-parse HEAD)
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="esrgan-pipeline" \
      org.opencontainers.image.description="ESRGAN training, evaluation and registration (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
# git: `dvc get` clones the data repository; ca-certificates: HTTPS to Git, S3 and MLflow.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin esrgan
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    ESRGAN_IMAGE_VARIANT=${VARIANT} \
    ESRGAN_GIT_COMMIT=${GIT_COMMIT}
WORKDIR /workspace
RUN chown esrgan:esrgan /workspace
USER 10001
CMD ["esrgan", "--help"]

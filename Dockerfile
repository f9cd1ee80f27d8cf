# syntax=docker/dockerfile:1
#
# gopruner GPU container ("dtools"): CUDA + libtorch 2.x.
#   build   - CUDA devel image + the official libtorch cxx11-ABI CUDA zip + Go;
#             `make shim` then `make build`, exactly as on a workstation.
#   runtime - CUDA cuDNN runtime image + libtorch's shared libraries +
#             /opt/gopruner/{bin/gopruner,lib/libgptorch.so}; ENTRYPOINT gopruner.
#
# Build with dtools/docker_build.sh, run with dtools/docker_run.sh (see
# dtools/README.md). `make container-check` lints this file with BuildKit's
# own parser and rules and replays the build stage's `make` steps locally.
#
# libtorch comes from the official zip rather than `pip install torch`: the zip
# has the include/ + lib/ layout that LIBTORCH expects, the cxx11 ABI that g++
# builds the shim with, and its CUDA/cuDNN libraries, with no Python.
# The zip and the Go tarball are x86_64 builds: the image is linux/amd64 only.

ARG CUDA_VERSION=12.4.1
ARG UBUNTU_VERSION=22.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu${UBUNTU_VERSION} AS build

# libtorch 2.x, CUDA build. LIBTORCH_CUDA must match the CUDA of the base image
# (cu124 <-> 12.4.x); LIBTORCH_URL overrides the whole download address.
ARG LIBTORCH_VERSION=2.4.1
ARG LIBTORCH_CUDA=cu124
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/${LIBTORCH_CUDA}/libtorch-cxx11-abi-shared-with-deps-${LIBTORCH_VERSION}%2B${LIBTORCH_CUDA}.zip
# Optional sha256 of the zip; checked when set.
ARG LIBTORCH_SHA256=
# go.mod says `go 1.26`.
ARG GO_VERSION=1.26.8
# Optional sha256 of go${GO_VERSION}.linux-amd64.tar.gz; checked when set.
ARG GO_SHA256=

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl unzip g++ make binutils \
 && rm -rf /var/lib/apt/lists/*

RUN curl -fsSL --retry 3 -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && if [ -n "${LIBTORCH_SHA256}" ]; then echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c -; fi \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm -f /tmp/libtorch.zip \
 && test -f /opt/libtorch/include/torch/script.h \
 && test -f /opt/libtorch/lib/libtorch_cuda.so

RUN curl -fsSL --retry 3 -o /tmp/go.tar.gz "https://go.dev/dl/go${GO_VERSION}.linux-amd64.tar.gz" \
 && if [ -n "${GO_SHA256}" ]; then echo "${GO_SHA256}  /tmp/go.tar.gz" | sha256sum -c -; fi \
 && tar -C /usr/local -xzf /tmp/go.tar.gz \
 && rm -f /tmp/go.tar.gz

# LIBTORCH: the Makefile's include/ + lib/ root. GOTOOLCHAIN=local: never
# download another Go. No .git in the context (.dockerignore): no VCS stamp.
ENV PATH=/usr/local/go/bin:${PATH} \
    LIBTORCH=/opt/libtorch \
    GOTOOLCHAIN=local \
    GOFLAGS=-buildvcs=false \
    CGO_ENABLED=1

WORKDIR /src

# Modules first, so that source edits do not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN make -j"$(nproc)" shim LIBTORCH="${LIBTORCH}"
RUN make build LIBTORCH="${LIBTORCH}"

# The shim must really link libtorch_cuda (the Makefile's --no-as-needed), or
# CUDA silently disappears at run time.
RUN readelf -d lib/libgptorch.so | grep -q 'NEEDED.*\[libtorch_cuda\.so\]' \
 && readelf -d bin/gopruner | grep -q 'NEEDED.*\[libgptorch\.so\]'


FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU_VERSION} AS runtime

ARG LIBTORCH_VERSION=2.4.1
LABEL org.opencontainers.image.title="gopruner" \
      org.opencontainers.image.description="Structured pruning of TorchScript CNNs (Go + libtorch ${LIBTORCH_VERSION}, CUDA)"

# libtorch's shared libraries only: no headers, static libraries or CMake files.
# The zip bundles its own CUDA/cuDNN libraries; the driver comes from the host
# (NVIDIA Container Toolkit, `--gpus`).
COPY --from=build /opt/libtorch/lib/*.so* /opt/libtorch/lib/

# The binary finds the shim through its rpath $ORIGIN/../lib: keep bin/ and lib/
# side by side.
COPY --from=build /src/bin/gopruner /opt/gopruner/bin/gopruner
COPY --from=build /src/lib/libgptorch.so /opt/gopruner/lib/libgptorch.so

ENV PATH=/opt/gopruner/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/libtorch/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}

# docker_run.sh mounts the caller's directory here and runs as the caller, so
# relative --model/--dataset/--exp-save paths land in that directory.
WORKDIR /workspace
ENTRYPOINT ["gopruner"]
CMD ["--help"]

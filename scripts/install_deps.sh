#!/usr/bin/env bash
# Installs every Debian 12 package styleclip builds and tests with (needs root or sudo).
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# python3-pil: the demonstration bundle's tests read PNG outputs.
# python3-jsonschema: tests/python/test_manifest_schema.py checks manifests against docs/manifest.schema.json.
# libcpp-httplib-dev: the HTTP server of `styleclip serve`.
# libopenblas0-openmp: without it Debian's torch falls back to reference BLAS, several times slower.
$sudo apt-get install -y -qq --no-install-recommends \
  cmake make g++ ccache pkg-config clang-format \
  libtorch-dev python3-torch python3-pil python3-jsonschema libopenblas0-openmp \
  libopencv-dev libcli11-dev libspdlog-dev nlohmann-json3-dev libgtest-dev \
  libicu-dev zlib1g-dev libcpp-httplib-dev >/dev/null
echo "dependencies installed"

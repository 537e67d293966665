#!/usr/bin/env bash
# Set up sweep on a fresh Debian machine: system packages, a virtual environment, the package itself.
# Idempotent: re-running skips what is already there. Usage: bash scripts/setup.sh [--with-test-services]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(dataset-fashion-mnist)
if [[ "${1:-}" == "--with-test-services" ]]; then
  apt_packages+=(postgresql chromium chromium-driver)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})) && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif ((${#missing[@]})); then
  echo "setup: please install these Debian packages: ${missing[*]}" >&2
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision first, pinned as a pair: a torchvision built for another torch fails to import.
.venv/bin/python -c "import torch, torchvision" 2>/dev/null ||
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q -e '.[dev,onnx,timm]'
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

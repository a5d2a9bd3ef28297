#!/usr/bin/env bash
# Install PyTorch into the virtual environment *before* the project, so that `pip install -e .` finds its
# `torch>=2.4` requirement satisfied and never pulls the multi-GB CUDA build onto a machine without a GPU.
#   - torch already importable            -> keep it
#   - an NVIDIA GPU is visible            -> the default (CUDA) build from the package index
#   - otherwise                           -> the CPU build: a local wheel (pip's find-links) if one is
#                                            configured, else PyTorch's own CPU wheel index
# Usage: scripts/install_torch.sh PATH/TO/python   (TORCH_VERSION overrides the CPU version, default 2.13.0)
set -euo pipefail
py="${1:?usage: install_torch.sh PATH/TO/python}"
version="${TORCH_VERSION:-2.13.0}"
if "$py" -c "import torch" >/dev/null 2>&1; then
  echo "torch $("$py" -c 'import torch; print(torch.__version__)') already installed"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "NVIDIA GPU found: installing the CUDA build of torch"
  "$py" -m pip install -q torch
else
  echo "no GPU: installing the CPU build of torch ${version}"
  "$py" -m pip install -q "torch==${version}+cpu" \
    || "$py" -m pip install -q "torch==${version}" --index-url https://download.pytorch.org/whl/cpu
fi

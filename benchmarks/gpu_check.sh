#!/usr/bin/env bash
# The GPU check, for a session that is lent a GPU machine (see README "Performance"). Without a GPU it says so and
# exits 0. On the GPU machine (no network there) it:
#   1. installs the wheels carried in .whl/ (lumamba's dependencies missing from the machine's image),
#   2. builds mamba-ssm (and causal-conv1d, when carried) from their sdists in .whl/ for this GPU, with the Mamba-1
#      kernel kept (recent source builds skip it unless MAMBA_KEEP_CUDA_BUILD=TRUE),
#   3. runs `pytest -m cuda` (mamba-ssm vs torch parity, bf16 vs float32, screen on the GPU, a training step),
#   4. prints inference and training windows/s (benchmarks/model_throughput.py, benchmarks/train_throughput.py).
#
# Prepare here, once per session (network to PyPI needed; the wheels are for the device's Python 3.12):
#   bash benchmarks/gpu_check.sh --prepare
# then run on the device with .whl carried:
#   device run: carry [".whl"], command "bash benchmarks/gpu_check.sh", timeout_s 540
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl
    platform="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
              --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    # lumamba's runtime dependencies that the device image lacks (it has torch, numpy, scipy, pandas, pydantic,
    # rich, typer, safetensors, huggingface_hub, pyyaml, matplotlib, jinja2, lazy_loader, pooch, tqdm)
    python3 -m pip download --no-deps $platform -d .whl mne pyedflib platformdirs decorator || exit 1
    python3 -m pip download --no-deps --no-binary=:all: -d .whl "mamba-ssm>=2.2" "causal-conv1d>=1.4" || exit 1
    ls -la .whl
    exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (nvidia-smi or torch.cuda missing): nothing to check"
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE \
       CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS="${MAX_JOBS:-16}"
for sdist in .whl/causal_conv1d-*.tar.gz .whl/mamba_ssm-*.tar.gz; do
    [ -e "$sdist" ] || continue
    echo "building $(basename "$sdist") for sm_${TORCH_CUDA_ARCH_LIST/./} …"
    started=$(date +%s)
    python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site "$sdist" \
        || echo "gpu_check: building $sdist failed; the torch backend is checked alone"
    echo "  built in $(( $(date +%s) - started )) s"
done
python3 -c "from lumamba_cli.model.mamba import mamba_ssm_status; print('mamba-ssm:', *mamba_ssm_status())"
python3 -m pytest -q -m cuda tests/test_cuda.py tests/test_mamba.py -p no:cacheprovider
python3 benchmarks/model_throughput.py --device cuda --batch 256
python3 benchmarks/train_throughput.py --device cuda
exit 0

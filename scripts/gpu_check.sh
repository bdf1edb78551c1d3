#!/usr/bin/env bash
# Builds bench/gpu_check.c and runs it on GPU 0 (under 5 minutes on one
# NVIDIA GPU). Exit status: 0 pass, 1 a check failed, 2 no GPU.
# BUILD_DIR picks the build directory (default build-gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-gpu}
gen=()
if command -v ninja >/dev/null 2>&1; then
    gen=(-G Ninja)
fi
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target gpu_check -j"$(nproc)" >/dev/null
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current \
        --format=csv,noheader || true
fi
exec timeout 300 "$build/gpu_check"

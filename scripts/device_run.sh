#!/usr/bin/env bash
# Run ON the lent GPU machine (after scripts/device_prepare.sh here, with
# .device carried): builds libvram against the carried libcjson and runs
#   checks  scripts/gpu_check.sh (CUDA vs host backend, bandwidth, 40 x 670 MiB
#           pass vs the bound) and scripts/gpu_check_python.py (bit identity,
#           compile, re-plan, OOM retry, soak)            about 6 minutes
#   bench   bench/gpu_bench.py (all modes, 24 GB cap)      up to 9 minutes;
#           further arguments go to gpu_bench.py (--modes, --budget-s)
#   all     checks and bench in one call, each stage cut to fit about 9
#           minutes in all
# Each stage first runs `vram bench`, cached for the planner.
# Results go to $OUT (the device tool brings them back): at most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-checks}
case "$what" in
all | checks | bench) ;;
*)
  echo "usage: device_run.sh all|checks|bench [gpu_bench.py arguments]" >&2
  exit 2
  ;;
esac
out=${OUT:-out/device}
mkdir -p "$out"
cj=/tmp/cjson
mkdir -p "$cj"
for f in .device/deb/*.deb; do dpkg -x "$f" "$cj"; done
export LD_LIBRARY_PATH="$cj/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .device/whl/*.whl || exit 1
cp -r .device/iff/imageio_ffmpeg /tmp/site/ && xz -d /tmp/site/imageio_ffmpeg/binaries/ffmpeg-*.xz &&
  chmod +x /tmp/site/imageio_ffmpeg/binaries/ffmpeg-* || exit 1
export PYTHONPATH="/tmp/site:$PWD/python" PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max \
    --format=csv || true
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVRAM_WERROR=OFF -DCJSON_ROOT="$cj" >/dev/null &&
    cmake --build build-gpu -j"$(nproc)" >/dev/null &&
    cmake --build build-gpu --target gpu_check -j"$(nproc)" >/dev/null || exit 1
  build-gpu/vram probe
} > "$out/card.txt" 2>&1 || { cat "$out/card.txt"; exit 1; }
cat "$out/card.txt"
export VRAM_LIBRARY="$PWD/build-gpu/libvram.so"
status=0
start=$SECONDS
export VRAM_CACHE_DIR=/tmp/vram-cache
timeout 60 build-gpu/vram bench 2>&1 | tee "$out/vram_bench.log" || status=1
# run_checks SECONDS_C SECONDS_PYTHON; run_bench SECONDS [gpu_bench.py arguments]
run_checks() {
  BUILD_DIR=build-gpu timeout "$1" bash scripts/gpu_check.sh 2>&1 | tee "$out/gpu_check.log" ||
    status=1
  timeout "$2" python3 scripts/gpu_check_python.py 2>&1 | tee "$out/gpu_check_python.log" ||
    status=1
}
run_bench() {
  local limit=$1
  shift
  timeout "$limit" python3 bench/gpu_bench.py --out "$out/gpu-bench" "$@" 2>&1 |
    tee "$out/gpu_bench.log" || status=1
}
case "$what" in
all)
  run_checks 150 150
  left=$((520 - (SECONDS - start)))
  run_bench "$left" --budget-s $((left - 90))
  ;;
checks) run_checks 300 200 ;;
bench)
  shift
  run_bench 540 "$@"
  ;;
esac
exit $status

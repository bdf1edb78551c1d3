#!/usr/bin/env bash
# Run HERE (a CPU machine with apt and pip) before a session's GPU run:
# gathers what the lent GPU machine lacks into .device/ (ignored by git,
# carried by the device tool): libcjson's Debian packages and the wheels
# the Python checks need there (Python 3.12, torch already installed), and
# mmgp (a peer in the GPU benchmark) with optimum-quanto, its one missing need.
# imageio-ffmpeg (the app check writes an mp4) travels unpacked with its
# ffmpeg xz-compressed: its 68 MB wheel alone is over the tool's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/deb .device/whl
(cd .device/deb && apt-get download libcjson1 libcjson-dev 2>/dev/null)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d .device/whl diffusers==0.42.1 ftfy==6.3.1 wcwidth importlib_metadata \
  mmgp==3.8.2 optimum-quanto==0.2.7 imageio-ffmpeg==0.8.1
(cd .device && python3 -m zipfile -e whl/imageio_ffmpeg-*.whl iff && rm whl/imageio_ffmpeg-*.whl &&
  rm -rf iff/imageio_ffmpeg-*.dist-info && xz -T0 -6 iff/imageio_ffmpeg/binaries/ffmpeg-*)
du -sh .device
echo "carry [\".device\"] and run: bash scripts/device_run.sh checks   (then: bench)"

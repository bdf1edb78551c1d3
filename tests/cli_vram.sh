#!/usr/bin/env bash
# The `vram` command line end to end: each command works, bad input gives
# one clear line on stderr and a non-zero exit.
set -u
VRAM=${1:?usage: cli_vram.sh path/to/vram}
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect STATUS PATTERN -- command...: exit status and a pattern in stdout+stderr.
expect() {
  local want=$1 pattern=$2
  shift 3
  local out status
  out=$("$@" 2>&1)
  status=$?
  if [ "$status" != "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $* -> status $status (want $want), output:"
    echo "$out" | head -20
    echo "(expected /$pattern/)"
    failures=$((failures + 1))
  fi
}
# one_line CMD...: a failing command prints exactly one line on stderr.
one_line() {
  local lines
  lines=$("$@" 2>&1 >/dev/null | wc -l)
  if [ "$lines" != 1 ]; then
    echo "FAIL: $* printed $lines lines on stderr, want 1"
    failures=$((failures + 1))
  fi
}

expect 0 'vram 0\.1\.0' -- "$VRAM" --version
expect 0 'usage: vram' -- "$VRAM" help
expect 0 'DRAM: ' -- "$VRAM" stats
expect 0 '"dram_total_mb"' -- "$VRAM" stats --json
expect 0 'RTX 4090' -- "$VRAM" stats --gpu 4090
expect 0 'VRAM: 2048.0/32606.6MB' -- "$VRAM" stats --vram-total 32606.6 --vram-used 2048
expect 0 'DRAM' -- "$VRAM" probe
expect 0 '"gpus"' -- "$VRAM" probe --json
expect 0 'H100' -- "$VRAM" gpus
expect 0 'wan2.1-t2v-14b +40 blocks x +670.2 MiB' -- "$VRAM" models
expect 0 '335.2 MiB' -- "$VRAM" models --dtype fp8_e4m3fn
expect 0 '"block_params":[[:space:]]*351394304' -- "$VRAM" models --json

# plan (DRAM simulated where the plan streams many blocks: this machine may
# have little): the seed's debug log, both languages, JSON, and the short form.
expect 0 '\[VRAM\] VRAM-DRAM 平衡分析' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu "RTX 4090" --debug
expect 0 '✓ 智能 VRAM 管理已启用' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu "RTX 4090" --debug
expect 0 '\[VRAM\] 自动配置' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --debug
expect 0 '\[VRAM\] 手动配置' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --debug --blocks-to-swap 30 --streams 2 --bandwidth 0.5 --dram-total 65536
expect 0 'Intelligent VRAM management enabled|VRAM management enabled' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --debug --lang en
expect 0 '"predicted_peak_bytes"' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --json
expect 0 'mode: auto' -- "$VRAM" plan --model wan2.1-t2v-1.3b --gpu H100
expect 0 '0 streamed' -- "$VRAM" plan --model wan2.1-t2v-1.3b --gpu H100
expect 0 'mode: manual' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --blocks-to-swap 35 --dram-total 65536
expect 0 '5 resident, 35 streamed' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --blocks-to-swap 35 --dram-total 65536
expect 0 'sampling step: .*\(1 forward\(s\), then a sync\)' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --passes 1
expect 2 'passes: 5 is out of range \(1-4\)' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --passes 5
# --vace-blocks is manual-only (auto mode does not read it): it turns manual on, and this model has no VACE blocks
expect 1 'vace_blocks_to_swap is 1, allowed 0-0 for this model' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --vace-blocks 1
expect 2 'width is 833, allowed 16-8192 in multiples of 16' -- "$VRAM" plan --model wan2.1-t2v-14b --width 833
expect 1 'DRAM size is unknown .*--dram-total' -- env VRAM_PROC_ROOT=/nonexistent "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090
expect 0 'synchronous' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --no-cuda-opt
expect 0 'pageable memory' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --no-dram-opt
expect 0 'streamed' -- "$VRAM" plan --model wan2.1-t2v-14b --vram-total 24564 --vram-used 1000

# A real file: write a tiny safetensors model and inspect/plan it.
python3 - "$tmp/tiny.safetensors" <<'PY'
import json, struct, sys
tensors, off = {}, 0
for b in range(3):
    for n, shape in (("self_attn.q.weight", [64, 64]), ("ffn.0.weight", [128, 64])):
        size = shape[0] * shape[1] * 2
        tensors[f"blocks.{b}.{n}"] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + size]}
        off += size
tensors["head.head.weight"] = {"dtype": "F32", "shape": [4, 64], "data_offsets": [off, off + 1024]}
off += 1024
h = json.dumps(tensors).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + bytes(off))
PY
expect 0 'blocks: 3' -- "$VRAM" inspect "$tmp/tiny.safetensors"
expect 0 'blocks.2.ffn.0.weight' -- "$VRAM" inspect "$tmp/tiny.safetensors" --tensors
expect 0 '"tensor_count":[[:space:]]*7' -- "$VRAM" inspect "$tmp/tiny.safetensors" --json
expect 0 'blocks:' -- "$VRAM" plan --model "$tmp/tiny.safetensors" --gpu 3060
# More VACE blocks than Wan's 15: libvram allows them all, so the CLI does.
python3 - "$tmp/vace20.safetensors" <<'PY'
import json, struct, sys
tensors, off = {}, 0
for name in [f"blocks.{b}" for b in range(4)] + [f"vace_blocks.{b}" for b in range(20)]:
    tensors[f"{name}.self_attn.q.weight"] = {"dtype": "BF16", "shape": [64, 64], "data_offsets": [off, off + 8192]}
    off += 8192
h = json.dumps(tensors).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + bytes(off))
PY
expect 0 '20 streamed \(20 VACE\)' -- "$VRAM" plan --model "$tmp/vace20.safetensors" --gpu 4090 --vace-blocks 20
expect 1 'vace_blocks_to_swap is 21, allowed 0-20 for this model' -- "$VRAM" plan --model "$tmp/vace20.safetensors" --gpu 4090 --vace-blocks 21
expect 2 'vace-blocks: 1e10 is out of range \(0-65536\)' -- "$VRAM" plan --model "$tmp/vace20.safetensors" --gpu 4090 --vace-blocks 1e10

# Bad input: one clear line, non-zero exit.
head -c 5 "$tmp/tiny.safetensors" > "$tmp/truncated.safetensors"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' > "$tmp/huge.safetensors"
expect 1 'truncated|shorter|too short' -- "$VRAM" inspect "$tmp/truncated.safetensors"
expect 1 'header' -- "$VRAM" inspect "$tmp/huge.safetensors"
expect 1 'No such file|not found|cannot open' -- "$VRAM" inspect "$tmp/missing.safetensors"
expect 2 'inspect: the FILE is empty' -- "$VRAM" inspect ""
# A model path that does not exist is a missing file, not an unknown catalog name.
expect 1 'missing.safetensors: cannot open: No such file' -- "$VRAM" plan --model "$tmp/missing.safetensors" --gpu 4090
expect 1 'cannot open' -- "$VRAM" plan --model models/wan.safetensors --gpu 4090
expect 2 'dram-available: 0 is out of range' -- "$VRAM" stats --dram-total 1000 --dram-available 0
# Options that a switch given with them would leave unread are refused.
expect 2 '--streams sets copy streams, which --no-cuda-opt turns off' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --no-cuda-opt --streams 4
expect 2 '--max-pinned caps pinned memory, which --no-dram-opt turns off' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --max-pinned 1000 --no-dram-opt
expect 2 '--lang is the language of --debug' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --lang en
expect 2 '--debug and --json are two outputs' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --debug --json
# Options whose 0 means "not set" take libvram's upper bound, and only values above 0.
expect 0 'pinned' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --max-pinned 2e9
expect 2 'max-pinned: 0 must be above 0' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --max-pinned 0
expect 2 'measured-bandwidth: 20000 is out of range \(0-10000\)' -- "$VRAM" plan --model wan2.1-t2v-14b --measured-bandwidth 20000
# A text encoder planned without a size says how to plan its prompt pass.
expect 0 'umt5-xxl is a text encoder.*--width 512 --height 256 --frames 1 --passes 1' -- "$VRAM" plan --model umt5-xxl --gpu 3060
expect 0 'at 512 tokens' -- "$VRAM" plan --model umt5-xxl --gpu 3060 --width 512 --height 256 --frames 1 --passes 1
expect 2 'not a number' -- "$VRAM" plan --model wan2.1-t2v-14b --threshold abc
expect 2 'out of range \(10-95\)' -- "$VRAM" plan --model wan2.1-t2v-14b --threshold 5
expect 2 'out of range \(1-16\)' -- "$VRAM" plan --model wan2.1-t2v-14b --streams 17
expect 2 'out of range \(0.1-1\)' -- "$VRAM" plan --model wan2.1-t2v-14b --bandwidth 1.5
expect 2 'unknown option' -- "$VRAM" plan --model wan2.1-t2v-14b --frobnicate
expect 2 'unknown command' -- "$VRAM" frobnicate
expect 2 'needs a value' -- "$VRAM" plan --model
expect 2 'plan needs --model' -- "$VRAM" plan
expect 1 'RTX 4090' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu "GTX 9999"
expect 1 'wan2.1-t2v-14b' -- "$VRAM" plan --model wan9-unknown --gpu 4090
expect 2 'frames' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --frames 80
expect 2 'width' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --width 830
expect 1 'does not fit' -- "$VRAM" plan --model wan2.1-t2v-14b --vram-total 2000
expect 1 'does not fit' -- "$VRAM" plan --model wan2.1-t2v-14b --gpu 4090 --manual --blocks-to-swap 1
one_line "$VRAM" plan --model wan2.1-t2v-14b --threshold abc
one_line "$VRAM" inspect "$tmp/truncated.safetensors"
one_line "$VRAM" plan --model wan2.1-t2v-14b --vram-total 2000

if ((failures)); then
  echo "$failures CLI check(s) failed"
  exit 1
fi
echo "all CLI checks passed"

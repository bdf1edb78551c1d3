"""Command-line video generation (the app's engine, no UI).

    python -m genesis.wan.generate --prompt "a cat surfing" --out out.mp4 \
        [--model tiny|FOLDER|FILE.safetensors] [--base FOLDER] [--image in.png] \
        [--width 832 --height 480 --frames 81 --steps 30 --cfg 6 --shift 5 \
         --scheduler unipc --seed 42] [--block-swap [--manual --blocks-to-swap N \
         --num-cuda-streams N --bandwidth-target F --vace-blocks-to-swap N] \
         --vram-threshold 50 --debug] [--metadata out.json]

The manual values (the flags in brackets with --manual) imply --manual: auto
mode does not read them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..vram import manual_only_options
from .loading import ModelError, ModelSpec
from .runner import GenerationRequest, WanGenerator
from .schedulers import SCHEDULERS
from .validation import COMPILE_BACKENDS, InputError
from .vram_setup import VramSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m genesis.wan.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative-prompt", default="")
    ap.add_argument("--out", required=True, help="output .mp4")
    ap.add_argument("--metadata", default="", help="also write the run's metadata as JSON here")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--base", default="", help="diffusers folder for a single-file checkpoint")
    ap.add_argument("--image", default="", help="input image: image-to-video")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=6.0)
    ap.add_argument("--shift", type=float, default=5.0)
    ap.add_argument("--scheduler", choices=SCHEDULERS, default="unipc")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-backend", choices=COMPILE_BACKENDS, default="inductor")
    ap.add_argument("--block-swap", action="store_true", help="enable intelligent VRAM management")
    ap.add_argument("--manual", action="store_true", help="manual values instead of auto hardware tuning")
    ap.add_argument("--vram-threshold", type=float, default=50.0)
    ap.add_argument("--blocks-to-swap", type=int, help="implies --manual")
    ap.add_argument("--no-cuda-optimization", action="store_true")
    ap.add_argument("--no-dram-optimization", action="store_true")
    ap.add_argument("--num-cuda-streams", type=int, help="implies --manual")
    ap.add_argument("--bandwidth-target", type=float, help="implies --manual")
    ap.add_argument("--offload-txt-emb", action="store_true")
    ap.add_argument("--offload-img-emb", action="store_true")
    ap.add_argument("--vace-blocks-to-swap", type=int, help="implies --manual")
    ap.add_argument("--debug", action="store_true", help="the [VRAM] debug log")
    return ap.parse_args(argv)


def request_from_args(a: argparse.Namespace) -> GenerationRequest:
    manual_values = {k: v for k in manual_only_options() if (v := getattr(a, k)) is not None}
    image = None
    if a.image:
        from PIL import Image

        image = Image.open(a.image).convert("RGB")
    return GenerationRequest(
        prompt=a.prompt,
        negative_prompt=a.negative_prompt,
        image=image,
        width=a.width,
        height=a.height,
        frames=a.frames,
        steps=a.steps,
        cfg=a.cfg,
        shift=a.shift,
        scheduler=a.scheduler,
        seed=a.seed,
        fps=a.fps,
        compile_enabled=a.compile,
        compile_backend=a.compile_backend,
        block_swap_enabled=a.block_swap,
        vram=VramSettings(
            auto_hardware_tuning=not (a.manual or manual_values),
            vram_threshold_percent=a.vram_threshold,
            enable_cuda_optimization=not a.no_cuda_optimization,
            enable_dram_optimization=not a.no_dram_optimization,
            offload_txt_emb=a.offload_txt_emb,
            offload_img_emb=a.offload_img_emb,
            vram_debug_mode=a.debug,
            **manual_values,
        ),
        model=ModelSpec(a.model, a.base),
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    try:
        req = request_from_args(a)
        gen = WanGenerator(output_dir=out.parent / ".genesis-tmp")
        res = gen.generate(req, progress=lambda s, n: print(f"step {s}/{n}", file=sys.stderr))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(res.video_path), out)
    except (InputError, ModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line, not a traceback, for a failed run
        print(f"error: generation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(out.parent / ".genesis-tmp", ignore_errors=True)
    res.metadata["video"] = str(out)
    if a.metadata:
        Path(a.metadata).write_text(json.dumps(res.metadata, indent=2, ensure_ascii=False, default=str))
    print(f"wrote {out} ({res.metadata['frames']} frames, {res.metadata['generate_s']:.2f} s)")
    if "note" in res.metadata:
        print(f"note: {res.metadata['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

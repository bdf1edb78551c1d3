"""One video generation, shared by the Gradio app and the command line.

Loads (and keeps) the pipeline, runs the seed's step 2 through
genesis.wan.vram_setup, places the model (block swapping through
genesis.blockswap when enabled), denoises with a progress callback, writes the
mp4 and gathers the run's metadata (plan, predicted and measured step time,
peak VRAM, bytes streamed, overlap, the engine's timeline).

Cancellation: generate(cancel=event) stops at the next denoising step once
the event is set (Cancelled). Whatever ends a run early (Cancelled, an
error, KeyboardInterrupt) goes through the same finally path as a finished
one: the block swapping is removed, so its engine, host regions and device
slots are freed before the next request runs."""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import swap
from .loading import LoadedModel, ModelSpec, load_pipeline, transformer_size
from .schedulers import make_scheduler
from .validation import InputError, validate_request
from .video import gallery_frames, to_uint8_frames, write_mp4
from .vram_setup import LogFn, VramSettings, build_block_swap_args

ProgressFn = Callable[[int, int], None]


class Cancelled(Exception):
    """The run was cancelled (generate's cancel event was set)."""

NOISE_NOTE = "tiny random-weight model: the output is noise; choose a real Wan model for real videos"


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    image: Any = None  # PIL image for image-to-video
    width: int = 832
    height: int = 480
    frames: int = 81
    steps: int = 30
    cfg: float = 6.0
    shift: float = 5.0
    scheduler: str = "unipc"
    seed: int = 42  # -1 = random
    fps: int = 16
    compile_enabled: bool = False
    compile_backend: str = "inductor"
    block_swap_enabled: bool = False
    vram: VramSettings = field(default_factory=VramSettings)
    model: ModelSpec = field(default_factory=lambda: ModelSpec("tiny"))


@dataclass
class GenerationResult:
    video_path: Path
    frames: np.ndarray
    gallery: list[np.ndarray]
    metadata: dict[str, Any]
    log: list[str]
    timeline: list[dict[str, Any]]


def log_run_summary(info: dict[str, Any], step_times: list[float], log: LogFn) -> None:
    """The debug log's last section: what the engine did in this run."""
    log("")
    for r in info.get("replans", []):
        if r["reason"] == "measured_block_ms":
            log(f"[VRAM] 实测每块计算: {r['measured_block_ms']:.2f} ms; 重新规划"
                + ("改变了放置，重建引擎" if r["placement_changed"] else "未改变放置"))
        elif r["reason"] == "engine_error":
            log(f"[VRAM] libvram 出错, 已恢复权重并改为不分块运行: {r.get('error', '')}")
        else:
            log(f"[VRAM] 显存不足后重新规划: 流式块 {r['streamed_count']}")
    steady = step_times[1:] or step_times
    overlap = info.get("overlap_ratio")
    log("[VRAM] 运行结果:")
    log(f"  流式块: {len(info.get('streamed_blocks', []))}, 流式传输: {info['bytes_streamed'] / 2**20:.1f}MB"
        + (f", 拷贝隐藏于计算: {overlap:.0%}" if overlap is not None else ""))
    if steady:
        log(f"  每步: 预测 {info['predicted_step_ms']:.1f}ms, 实测 {1000 * sum(steady) / len(steady):.1f}ms")


def set_compiled(loaded: LoadedModel, enabled: bool, backend: str) -> None:
    """Compiles the transformer blocks in place, or undoes an earlier
    compile: nn.Module.compile keeps its result in _compiled_call_impl, and
    the model outlives the run."""
    from genesis.blockswap import compile_blocks

    for t in loaded.transformers:
        if enabled:
            compile_blocks(t, backend=backend)
        else:
            for m in t.modules():
                if getattr(m, "_compiled_call_impl", None) is not None:
                    m._compiled_call_impl = None


def default_device() -> str:
    from ..devices import resolve_device  # torch loads with the first generator

    return str(resolve_device())


class WanGenerator:
    """Keeps one loaded model; generate() runs one request at a time."""

    def __init__(self, output_dir: str | Path | None = None, device: str | None = None) -> None:
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="genesis-videos-"))
        self.device = device or default_device()
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        # Calls of generate() in progress, counted before the lock: the app's
        # queue must never let this exceed 1 (its tests read max_in_flight).
        self._count_lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def model(self, spec: ModelSpec, want_i2v: bool) -> LoadedModel:
        """The loaded pipeline for spec, loading it on first use."""
        import torch

        cur = self._loaded
        if cur is not None and cur.spec == spec and (cur.i2v or not want_i2v) and (cur.i2v == want_i2v or not cur.is_tiny):
            return cur
        self._loaded = None  # free the old one before loading the next
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self._loaded = load_pipeline(spec, want_i2v, torch_dtype=dtype)
        return self._loaded

    def generate(self, req: GenerationRequest, progress: ProgressFn | None = None, log: LogFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            with self._lock:
                return self._generate(req, progress, log, cancel)
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def _generate(self, req: GenerationRequest, progress: ProgressFn | None, log: LogFn | None,
                  cancel: threading.Event | None) -> GenerationResult:
        import torch

        def check_cancel() -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("generation cancelled")

        lines: list[str] = []

        def emit(line: str) -> None:
            lines.append(line)
            (log or print)(line)

        validate_request(req.prompt, req.width, req.height, req.frames, req.steps, req.cfg, req.shift,
                         seed=req.seed, fps=req.fps, compile_backend=req.compile_backend)
        check_cancel()
        started = time.time()
        t0 = time.perf_counter()
        loaded = self.model(req.model, want_i2v=req.image is not None)
        load_s = time.perf_counter() - t0
        pipe = loaded.pipe
        pipe.scheduler = make_scheduler(req.scheduler, req.shift, pipe.scheduler.config.get("num_train_timesteps", 1000))

        size_mb, num_layers = transformer_size(pipe.transformer)
        on_gpu_before = any(p.is_cuda for m in pipe.components.values() if isinstance(m, torch.nn.Module)
                            for p in m.parameters())
        if req.block_swap_enabled and on_gpu_before:
            # An earlier run left the pipeline, or the parts Phases brought
            # in, on the GPU: step 2 must see the GPU without them, and the
            # swap must start from host memory.
            pipe.to("cpu")
            torch.cuda.empty_cache()
        passes = 2 if req.cfg > 1.0 else 1
        video = {"width": req.width, "height": req.height, "frames": req.frames, "passes_per_step": passes}
        setup = build_block_swap_args(
            req.vram,
            req.block_swap_enabled,
            model_size_mb=size_mb,
            num_layers=num_layers,
            log=emit,
            plan_context=video,
            model=pipe.transformer,
        )
        if req.vram.vram_debug_mode and req.block_swap_enabled:
            for name in loaded.file_backed():
                emit(f"[VRAM] {name}: 按文件加载, 块权重留在检查点中, 由 libvram 直接流式读取")
            for name, why in loaded.whole_reasons.items():
                emit(f"[VRAM] {name}: 整体载入内存 ({why})")
        on_gpu = self.device.startswith("cuda")
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        session = swap.place(loaded, setup.args, self.device, log=emit, debug=req.vram.vram_debug_mode, video=video,
                             hardware=setup.hardware)
        finished = False
        try:
            check_cancel()
            set_compiled(loaded, req.compile_enabled, req.compile_backend)
            seed = req.seed if req.seed != -1 else random.randrange(2**31)
            step_times: list[float] = []
            last = [time.perf_counter()]

            def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                now = time.perf_counter()
                step_times.append(now - last[0])
                last[0] = now
                if progress is not None:
                    progress(step + 1, req.steps)
                check_cancel()  # raised out of the pipeline: the finally below cleans up
                return kwargs

            call: dict[str, Any] = dict(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt or None,
                height=req.height,
                width=req.width,
                num_frames=req.frames,
                num_inference_steps=req.steps,
                guidance_scale=req.cfg,
                generator=torch.Generator(device="cpu").manual_seed(seed),
                callback_on_step_end=on_step,
                output_type="np",
            )
            if loaded.i2v:
                if req.image is None:
                    raise InputError("This is an image-to-video model: give it an input image. / "
                                     "图生视频模型需要输入图像")
                call["image"] = req.image.convert("RGB")
            if progress is not None:
                progress(0, req.steps)
            t1 = time.perf_counter()
            last[0] = t1
            with torch.inference_mode():
                frames = pipe(**call).frames
            run_s = time.perf_counter() - t1
            swap_info, timeline = session.report()
            if req.vram.vram_debug_mode and session.handles:
                log_run_summary(swap_info, step_times, emit)
            finished = True
        finally:
            session.close()
            if on_gpu and not finished:  # the aborted run's activations
                torch.cuda.empty_cache()
        frames = np.asarray(frames)[0]
        pixels = to_uint8_frames(frames)  # once, for the mp4 and the gallery
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # Unique even for two runs of one seed started in the same second.
        video_file = write_mp4(pixels, self.output_dir / f"wan-{time.time_ns()}-{seed}.mp4", fps=req.fps)
        peak = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None
        # The first step includes text encoding; the steady state is the rest.
        steady = step_times[1:] or step_times
        meta: dict[str, Any] = {
            "model": f"{loaded.spec.tiny_name(loaded.i2v)} (built-in)" if loaded.is_tiny
            else str(loaded.path),
            "task": "image-to-video" if loaded.i2v else "text-to-video",
            "device": self.device,
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt,
            "width": req.width,
            "height": req.height,
            "frames": req.frames,
            "steps": req.steps,
            "cfg": req.cfg,
            "shift": req.shift,
            "scheduler": req.scheduler,
            "seed": seed,
            "compile": {"enabled": req.compile_enabled, "backend": req.compile_backend},
            "transformer_size_mb": round(size_mb, 3),
            # Loaded file-backed, still: blocks streamed from the checkpoint.
            "file_backed": loaded.file_backed(),
            "loaded_whole_because": loaded.whole_reasons or None,
            "transformer_blocks": num_layers,
            "vram_mode": setup.mode,
            "vram_settings": req.vram.as_dict(),
            "block_swap_args": setup.args,
            "vram_error": setup.error or None,
            "memory_stats_before": setup.stats,
            **swap_info,
            "measured_step_ms": round(1000 * float(np.mean(steady)), 3) if steady else None,
            "step_ms": [round(1000 * s, 3) for s in step_times],
            "peak_vram_mb": round(peak, 1) if peak is not None else "N/A",
            "load_s": round(load_s, 3),
            "generate_s": round(run_s, 3),
            "started_at": started,
            "requests_in_flight": self.in_flight,
            "finished_at": time.time(),
            "video": str(video_file),
        }
        if loaded.is_tiny:
            meta["note"] = NOISE_NOTE
        return GenerationResult(
            video_path=video_file,
            frames=frames,
            gallery=gallery_frames(pixels),
            metadata=meta,
            log=lines,
            timeline=timeline,
        )

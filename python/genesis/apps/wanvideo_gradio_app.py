"""WanVideo Gradio app with intelligent VRAM management.

    python -m genesis.apps.wanvideo_gradio_app [--host 127.0.0.1] [--port 7860]
        [--model tiny|FOLDER|FILE.safetensors] [--base FOLDER] [--lang zh|en|auto]

The built-in tiny model is the default, so the app runs on a CPU out of the
box (its output is noise). All VRAM decisions come from genesis (libvram);
this module only wires the UI to genesis.wan.runner.

Requests run one at a time (Gradio's queue, concurrency 1). A cancelled
request (the UI's or a client's job.cancel()) stops at its next denoising
step and frees its block-swap engine before the queue starts the next one.
Numeric inputs are checked against the controls' ranges (RANGES) for API
callers, who never see the sliders; the plan options' ranges are libvram's
(genesis.vram.option_range).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import operator
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from genesis import vram
from genesis.i18n import LANGS, Texts
from genesis.planning import option_bounds
from genesis.wan.loading import ModelError, ModelSpec
from genesis.wan.runner import Cancelled, GenerationRequest, WanGenerator
from genesis.wan.schedulers import SCHEDULERS
from genesis.wan.validation import COMPILE_BACKENDS, SEED_MAX, InputError
from genesis.wan.vram_setup import VramSettings

PRESETS: tuple[str, ...] = (
    "Fast Preview",
    "Standard",
    "High Quality",
    "Memory Optimized",
    "Speed Optimized",
    "Default",
)


def most_catalog_blocks() -> int:
    """The most blocks a built-in model has (Wan 14B: 40)."""
    counts = []
    for name in vram.catalog():
        with vram.Layout.from_catalog(name) as layout:
            counts.append(layout.info()["group_block_count"][0])
    return max(counts)


def plan_option_range(name: str, ui_max: float | None = None) -> tuple[float, float]:
    """libvram's range of the plan option `name`, its max lowered to ui_max."""
    lo, hi, integer = option_bounds(name, ui_max)
    return (int(lo), int(hi)) if integer else (lo, hi)


# (minimum, maximum) of each numeric control: the sliders use them (frames
# and seed are number boxes), and check_ranges enforces them for API requests. The plan options' are
# libvram's, capped where a slider could not show all of it: libvram allows
# sides up to 8192 and as many blocks as the model has (checked once it is
# loaded).
RANGES: dict[str, tuple[float, float]] = {
    "width": plan_option_range("width", 1920),
    "height": plan_option_range("height", 1920),
    "frames": plan_option_range("frames"),
    "steps": (1, 100),
    "seed": (-1, SEED_MAX),
    "cfg": (0.0, 20.0),
    "shift": (0.1, 20.0),
    "vram_threshold_percent": plan_option_range("vram_threshold_percent"),
    "blocks_to_swap": plan_option_range("blocks_to_swap", most_catalog_blocks()),
    "num_cuda_streams": plan_option_range("num_cuda_streams"),
    "bandwidth_target": plan_option_range("bandwidth_target"),
    "vace_blocks_to_swap": plan_option_range("vace_blocks_to_swap"),
}


def whole_or_float(value: Any) -> float:
    """An integer as it is (a 64-bit seed loses digits as a float; numpy's
    too), anything else as a float."""
    try:
        return operator.index(value)
    except TypeError:
        return float(value)


def check_ranges(**values: float) -> None:
    """InputError naming the first value outside its control's range, or
    not whole where the range is of whole numbers (before any int() would
    cut it)."""
    for name, value in values.items():
        lo, hi = RANGES[name]
        if not lo <= value <= hi:
            raise InputError(f"{name}={value:g} is out of range: allowed {lo:g} to {hi:g}")
        if isinstance(lo, int) and isinstance(hi, int) and value != int(value):
            raise InputError(f"{name}={value:g} is not a whole number")


def slider(name: str, **kw: Any) -> gr.Slider:
    """The control `name` with its RANGES. Gradio refuses an out-of-range
    API value before the handler runs, with a message that does not say
    which value; this one's message names the control. (An instance
    attribute, not a gr.Slider subclass: Gradio writes a .pyi stub next to
    the module of every component class.)"""
    lo, hi = RANGES[name]
    s = gr.Slider(lo, hi, elem_id=name, **kw)
    plain = s.preprocess

    def preprocess(payload: float) -> float:
        try:
            return plain(payload)
        except gr.Error as e:
            raise gr.Error(f"{name}: {e.message}") from e

    s.preprocess = preprocess  # type: ignore[method-assign]
    return s


def apply_preset(preset_name: str) -> tuple[int, float, float, str, bool, bool, bool, float]:
    """The seed's preset table: (steps, cfg, shift, scheduler, compile_enabled,
    block_swap_enabled, auto_hardware_tuning, vram_threshold_percent)."""
    name = preset_name or ""
    if "Fast Preview" in name:
        return (4, 1.0, 5.0, "sa_ode_stable/lowstep", False, False, True, 50.0)
    if "Standard" in name:
        return (30, 6.0, 5.0, "unipc", False, False, True, 50.0)
    if "High Quality" in name:
        return (50, 8.0, 5.0, "ddim", False, False, True, 50.0)
    if "Memory Optimized" in name:
        return (30, 6.0, 5.0, "unipc", False, True, True, 40.0)  # lower threshold: stream more
    if "Speed Optimized" in name:
        return (30, 6.0, 5.0, "unipc", True, False, True, 60.0)  # higher threshold: stream less
    return (30, 6.0, 5.0, "unipc", False, False, True, 50.0)


def done_text(texts: Texts, meta: dict[str, Any]) -> str:
    """The status line after a run; when block swapping could not be set up
    (the run went on unswapped) it says why, not only the debug log."""
    done = texts.plain("done") + f" — {meta['generate_s']:.2f} s, {meta['frames']} frames"
    if "note" in meta:
        done += f" ({meta['note']})"
    if meta.get("vram_error"):
        done += f" — {texts.plain('vram_off')}: {meta['vram_error']}"
    return done


def vram_mode_text(texts: Texts, block_swap_enabled: bool, auto_hardware_tuning: bool) -> str:
    if not block_swap_enabled:
        return texts.plain("mode_off")
    return texts.plain("mode_auto" if auto_hardware_tuning else "mode_manual")


def memory_monitor_text() -> str:
    """One refresh of the live VRAM/DRAM monitor (genesis get_memory_stats)."""
    try:
        from genesis.apps.intelligent_vram_manager import current_memory_stats

        s = current_memory_stats()
    except Exception as e:  # shown, never fatal: the monitor is informative
        return f"memory stats unavailable: {e}"
    if s.extra.get("host_backend"):
        vram = "VRAM: N/A (no GPU: libvram's host backend, RAM stands in for VRAM)"
    elif s.vram_known:
        vram = f"VRAM ({s.gpu_name}): {s.vram_used_mb:.1f}/{s.vram_total_mb:.1f}MB ({s.vram_usage_percent:.1f}%)"
    else:
        vram = f"VRAM: N/A ({s.gpu_name or 'no GPU'})"
    dram = f"DRAM: {s.dram_used_mb:.1f}/{s.dram_total_mb:.1f}MB ({s.dram_usage_percent:.1f}%)"
    return f"{vram}  \n{dram}"


def timeline_figure(events: list[dict[str, Any]]) -> Any:
    """Per-block copy and compute bars over time from the engine timeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    if not events:
        ax.text(0.5, 0.5, "no block streaming in this run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.tight_layout()
        return fig
    lanes = {"copy": 1, "compute": 0}
    cmap = plt.get_cmap("tab20")
    for ev in events:
        y = lanes["copy" if ev["kind"] == "copy" else "compute"]
        ax.barh(y, ev["end_ms"] - ev["start_ms"], left=ev["start_ms"], height=0.6, color=cmap(ev["block"] % 20), edgecolor="none")
    ax.set_yticks([0, 1], ["compute", "copy"])
    ax.set_xlabel("ms since first block")
    ax.set_title("per-block copy (top) and compute (bottom); colour = block")
    fig.tight_layout()
    return fig


class WanVideoApp:
    """The app's state (one generator, one loaded model) and its handler."""

    def __init__(self, model: str = "tiny", base: str = "", lang: str = "zh", output_dir: str | None = None) -> None:
        self.texts = Texts(lang)
        self.default_model = ModelSpec(model, base)
        self.generator = WanGenerator(output_dir=output_dir)
        self.last_log: list[str] = []
        self.last_timeline: list[dict[str, Any]] = []
        self.cancelled_runs = 0

    def generate_video(
        self,
        prompt: str,
        negative_prompt: str,
        image: Any,
        width: int,
        height: int,
        frames: int,
        steps: int,
        cfg: float,
        shift: float,
        scheduler: str,
        seed: int,
        # Optimization parameters
        compile_enabled: bool,
        compile_backend: str,
        block_swap_enabled: bool,
        # Intelligent VRAM management
        auto_hardware_tuning: bool = True,
        vram_threshold_percent: float = 50.0,
        blocks_to_swap: int = 0,
        enable_cuda_optimization: bool = True,
        enable_dram_optimization: bool = True,
        num_cuda_streams: int = 8,
        bandwidth_target: float = 0.8,
        offload_txt_emb: bool = False,
        offload_img_emb: bool = False,
        vace_blocks_to_swap: int = 0,
        vram_debug_mode: bool = False,
        # Model choice
        model_path: str = "",
        model_base: str = "",
        progress: Any = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, list[Any], dict[str, Any]]:
        """Generates one video; returns (mp4 path, gallery frames, metadata).
        Raises InputError / ModelError with a message meant for the user,
        Cancelled once `cancel` is set."""
        check_ranges(
            width=float(width), height=float(height), frames=float(frames), steps=float(steps),
            seed=whole_or_float(seed), cfg=float(cfg), shift=float(shift),
            vram_threshold_percent=float(vram_threshold_percent), blocks_to_swap=float(blocks_to_swap),
            num_cuda_streams=float(num_cuda_streams), bandwidth_target=float(bandwidth_target),
            vace_blocks_to_swap=float(vace_blocks_to_swap),
        )
        vram = VramSettings(
            auto_hardware_tuning=bool(auto_hardware_tuning),
            vram_threshold_percent=float(vram_threshold_percent),
            blocks_to_swap=int(blocks_to_swap),
            enable_cuda_optimization=bool(enable_cuda_optimization),
            enable_dram_optimization=bool(enable_dram_optimization),
            num_cuda_streams=int(num_cuda_streams),
            bandwidth_target=float(bandwidth_target),
            offload_txt_emb=bool(offload_txt_emb),
            offload_img_emb=bool(offload_img_emb),
            vace_blocks_to_swap=int(vace_blocks_to_swap),
            vram_debug_mode=bool(vram_debug_mode),
        )
        spec = ModelSpec(model_path.strip(), model_base.strip()) if (model_path or "").strip() else self.default_model
        req = GenerationRequest(
            prompt=prompt or "",
            negative_prompt=negative_prompt or "",
            image=image,
            width=int(width),
            height=int(height),
            frames=int(frames),
            steps=int(steps),
            cfg=float(cfg),
            shift=float(shift),
            scheduler=scheduler,
            seed=int(seed),
            compile_enabled=bool(compile_enabled),
            compile_backend=compile_backend,
            block_swap_enabled=bool(block_swap_enabled),
            vram=vram,
            model=spec,
        )

        def report(step: int, total: int) -> None:
            if progress is not None:
                progress((step, total), desc="denoising", unit="steps")

        result = self.generator.generate(req, progress=report, cancel=cancel)
        self.last_log = result.log
        self.last_timeline = result.timeline
        return str(result.video_path), list(result.gallery), result.metadata


def build_ui(app: WanVideoApp) -> gr.Blocks:
    t = app.texts
    tiny = app.default_model.is_tiny
    small = tiny  # the tiny model on a CPU: small defaults keep a click quick
    d_steps, d_cfg, d_shift, d_sched, d_compile, d_swap, d_auto, d_thr = apply_preset("Default")
    with gr.Blocks(title="Genesis WanVideo") as demo:
        gr.Markdown(t("title"))
        notice = gr.Markdown(t("tiny_notice"), visible=tiny, elem_id="tiny_notice")
        with gr.Row():
            with gr.Column(scale=1):
                model_path = gr.Textbox(label=t("model"), value=app.default_model.model or "tiny", elem_id="model_path")
                model_base = gr.Textbox(label=t("model_base"), value=app.default_model.base, elem_id="model_base")
                prompt = gr.Textbox(label=t("prompt"), lines=3, elem_id="prompt")
                negative_prompt = gr.Textbox(label=t("negative_prompt"), lines=2, elem_id="negative_prompt")
                image = gr.Image(label=t("image"), type="pil", elem_id="image")
                preset = gr.Radio(choices=list(PRESETS), value="Default", label=t("preset"), elem_id="preset")
                with gr.Row():
                    width = slider("width", value=128 if small else 832, step=16, label=t("width"))
                    height = slider("height", value=128 if small else 480, step=16, label=t("height"))
                with gr.Row():
                    frames = gr.Number(value=17 if small else 81, precision=0, label=t("frames"), elem_id="frames")
                    steps = slider("steps", value=d_steps, step=1, label=t("steps"))
                with gr.Row():
                    cfg = slider("cfg", value=d_cfg, step=0.1, label=t("cfg"))
                    shift = slider("shift", value=d_shift, step=0.1, label=t("shift"))
                with gr.Row():
                    scheduler = gr.Dropdown(list(SCHEDULERS), value=d_sched, label=t("scheduler"), elem_id="scheduler")
                    seed = gr.Number(value=42, precision=0, label=t("seed"), elem_id="seed")
                with gr.Accordion(t("optimization"), open=True):
                    with gr.Row():
                        compile_enabled = gr.Checkbox(value=d_compile, label=t("compile_enabled"), elem_id="compile_enabled")
                        compile_backend = gr.Dropdown(list(COMPILE_BACKENDS), value="inductor", label=t("compile_backend"), elem_id="compile_backend")
                with gr.Accordion(t("vram_section"), open=True):
                    block_swap_enabled = gr.Checkbox(value=d_swap, label=t("block_swap_enabled"), elem_id="block_swap_enabled")
                    auto_hardware_tuning = gr.Checkbox(value=d_auto, label=t("auto_hardware_tuning"), elem_id="auto_hardware_tuning")
                    vram_threshold_percent = slider("vram_threshold_percent", value=d_thr, step=1, label=t("vram_threshold_percent"))
                    mode_status = gr.Markdown(vram_mode_text(t, d_swap, d_auto), elem_id="vram_mode")
                    with gr.Accordion(t("advanced"), open=True):
                        manual_only = vram.manual_only_options()

                        def plan_slider(name: str, **kw: Any) -> gr.Slider:
                            """Locked while auto tuning is on when auto mode does not read it."""
                            return slider(name, label=t(name), interactive=not d_auto if name in manual_only else None, **kw)

                        blocks_to_swap = plan_slider("blocks_to_swap", value=0, step=1, info=t("blocks_to_swap_info"))
                        with gr.Row():
                            enable_cuda_optimization = gr.Checkbox(value=True, label=t("enable_cuda_optimization"), elem_id="enable_cuda_optimization")
                            enable_dram_optimization = gr.Checkbox(value=True, label=t("enable_dram_optimization"), elem_id="enable_dram_optimization")
                        num_cuda_streams = plan_slider("num_cuda_streams", value=8, step=1)
                        bandwidth_target = plan_slider("bandwidth_target", value=0.8, step=0.05)
                        with gr.Row():
                            offload_txt_emb = gr.Checkbox(value=False, label=t("offload_txt_emb"), elem_id="offload_txt_emb")
                            offload_img_emb = gr.Checkbox(value=False, label=t("offload_img_emb"), elem_id="offload_img_emb")
                        vace_blocks_to_swap = plan_slider("vace_blocks_to_swap", value=0, step=1)
                        vram_debug_mode = gr.Checkbox(value=False, label=t("vram_debug_mode"), elem_id="vram_debug_mode")
            with gr.Column(scale=1):
                generate_button = gr.Button(t("generate"), variant="primary", elem_id="generate")
                status = gr.Textbox(label=t("status"), value=t.plain("ready"), interactive=False, elem_id="status")
                video_output = gr.Video(label=t("video"), elem_id="video_output")
                frames_gallery = gr.Gallery(label=t("frames_gallery"), columns=4, height="auto", elem_id="frames_gallery")
                metadata_output = gr.JSON(label=t("metadata"), elem_id="metadata")
                debug_log = gr.Textbox(label=t("debug_log"), lines=14, interactive=False, visible=False, elem_id="debug_log")
                timeline_plot = gr.Plot(label=t("timeline"), elem_id="timeline_plot")
                monitor = gr.Markdown(memory_monitor_text(), label=t("monitor"), elem_id="memory_monitor")
                timer = gr.Timer(2.0)

        preset.change(
            apply_preset,
            inputs=[preset],
            outputs=[steps, cfg, shift, scheduler, compile_enabled, block_swap_enabled, auto_hardware_tuning, vram_threshold_percent],
            queue=False,
        )

        manual_controls = [c for c in (blocks_to_swap, num_cuda_streams, bandwidth_target, vace_blocks_to_swap)
                           if c.elem_id in manual_only]

        def on_mode(swap_on: bool, auto: bool) -> tuple[Any, ...]:
            manual = gr.update(interactive=not auto)
            return (vram_mode_text(t, swap_on, auto), *(manual for _ in manual_controls))

        for trigger in (block_swap_enabled, auto_hardware_tuning):
            trigger.change(
                on_mode,
                inputs=[block_swap_enabled, auto_hardware_tuning],
                outputs=[mode_status, *manual_controls],
                queue=False,
            )
        vram_debug_mode.change(lambda on: gr.update(visible=bool(on)), inputs=[vram_debug_mode], outputs=[debug_log], queue=False)
        model_path.change(lambda m: gr.update(visible=ModelSpec(m or "").is_tiny), inputs=[model_path], outputs=[notice], queue=False)
        timer.tick(memory_monitor_text, outputs=[monitor], concurrency_limit=None, show_progress="hidden")

        def run_one(*args: Any, progress: Any, cancel: threading.Event) -> tuple[Any, ...]:
            # *args are the UI's inputs, which stop before progress and cancel.
            video, gallery, meta = app.generate_video(*args, progress=progress,  # type: ignore[misc]
                                                      cancel=cancel)
            return (video, gallery, meta, done_text(t, meta), "\n".join(app.last_log),
                    timeline_figure(app.last_timeline))

        async def generate_wrapper(*args: Any, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            # The run goes to a thread; when Gradio cancels this task the run
            # is told to stop, and the task waits for it to free its engine,
            # so the queue never starts the next request on a busy device.
            cancel = threading.Event()
            run = asyncio.ensure_future(asyncio.to_thread(run_one, *args, progress=progress, cancel=cancel))
            try:
                while True:
                    try:
                        return await asyncio.shield(run)
                    except asyncio.CancelledError:
                        if run.done():
                            raise
                        cancel.set()
                        app.cancelled_runs += 1
            except Cancelled as e:
                raise asyncio.CancelledError() from e
            except (InputError, ModelError) as e:
                raise gr.Error(str(e), duration=20) from e
            except Exception as e:  # anything else: shown, and the app keeps serving
                raise gr.Error(f"generation failed: {type(e).__name__}: {e}", duration=20) from e

        # The API names its parameters after generate_video's.
        sig = inspect.signature(WanVideoApp.generate_video)
        params = [p for n, p in sig.parameters.items() if n not in ("self", "progress", "cancel")]
        params.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress()))
        generate_wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]

        generate_button.click(
            fn=generate_wrapper,
            inputs=[
                prompt, negative_prompt, image, width, height, frames, steps, cfg, shift, scheduler, seed,
                compile_enabled, compile_backend, block_swap_enabled,
                auto_hardware_tuning, vram_threshold_percent, blocks_to_swap,
                enable_cuda_optimization, enable_dram_optimization, num_cuda_streams, bandwidth_target,
                offload_txt_emb, offload_img_emb, vace_blocks_to_swap, vram_debug_mode,
                model_path, model_base,
            ],
            outputs=[video_output, frames_gallery, metadata_output, status, debug_log, timeline_plot],
            api_name="generate",
            concurrency_limit=1,
        )
    demo.queue(default_concurrency_limit=1)
    return demo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="WanVideo Gradio app with intelligent VRAM management")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--model", default="tiny", help="tiny (default), tiny-a14b (two experts, as Wan2.2 A14B), a diffusers "
                    "folder, or a .safetensors transformer")
    ap.add_argument("--base", default="", help="diffusers folder for the rest of a single-file checkpoint")
    ap.add_argument("--lang", choices=LANGS, default="zh", help="UI language (auto = the browser's locale)")
    ap.add_argument("--output-dir", default=None, help="where videos are written (default: a temp folder)")
    ap.add_argument("--share", action="store_true")
    a = ap.parse_args(argv)
    app = WanVideoApp(model=a.model, base=a.base, lang=a.lang, output_dir=a.output_dir)
    demo = build_ui(app)
    demo.launch(
        server_name=a.host,
        server_port=a.port,
        share=a.share,
        show_error=True,
        i18n=app.texts.i18n,
        allowed_paths=[str(Path(app.generator.output_dir).resolve())],
    )


if __name__ == "__main__":
    main()

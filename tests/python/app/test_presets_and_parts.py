"""预设配置正确应用 (the seed's preset table), schedulers, validation, video."""

from __future__ import annotations

import numpy as np
import pytest

from genesis.apps.wanvideo_gradio_app import PRESETS, apply_preset
from genesis.wan.schedulers import SCHEDULERS, make_scheduler
from genesis.wan.validation import InputError, validate_request
from genesis.wan.video import gallery_frames, write_mp4

# The seed's apply_preset, verbatim: (steps, cfg, shift, scheduler,
# compile_enabled, block_swap_enabled, auto_hardware_tuning, vram_threshold_percent)
SEED_PRESETS = {
    "Fast Preview": (4, 1.0, 5.0, "sa_ode_stable/lowstep", False, False, True, 50.0),
    "Standard": (30, 6.0, 5.0, "unipc", False, False, True, 50.0),
    "High Quality": (50, 8.0, 5.0, "ddim", False, False, True, 50.0),
    "Memory Optimized": (30, 6.0, 5.0, "unipc", False, True, True, 40.0),
    "Speed Optimized": (30, 6.0, 5.0, "unipc", True, False, True, 60.0),
    "Default": (30, 6.0, 5.0, "unipc", False, False, True, 50.0),
}


@pytest.mark.parametrize("name", list(SEED_PRESETS))
def test_preset_table_is_the_seeds(name: str) -> None:
    assert name in PRESETS
    assert apply_preset(name) == SEED_PRESETS[name]


def test_preset_matches_by_substring_like_the_seed() -> None:
    assert apply_preset("⚡ Fast Preview (4 steps)") == SEED_PRESETS["Fast Preview"]
    assert apply_preset("anything else") == SEED_PRESETS["Default"]
    assert apply_preset("") == SEED_PRESETS["Default"]


def test_every_preset_scheduler_exists() -> None:
    for values in SEED_PRESETS.values():
        assert values[3] in SCHEDULERS


def test_scheduler_mapping() -> None:
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    u = make_scheduler("unipc", 3.0)
    assert isinstance(u, UniPCMultistepScheduler)
    assert u.config.prediction_type == "flow_prediction" and u.config.flow_shift == 3.0 and u.config.use_flow_sigmas
    d = make_scheduler("ddim", 4.0)
    assert isinstance(d, DPMSolverMultistepScheduler)
    assert d.config.solver_order == 1 and d.config.prediction_type == "flow_prediction" and d.config.flow_shift == 4.0
    e = make_scheduler("sa_ode_stable/lowstep", 5.0)
    assert isinstance(e, FlowMatchEulerDiscreteScheduler) and e.config.shift == 5.0
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler("nope", 5.0)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_schedulers_step_count(name: str) -> None:
    s = make_scheduler(name, 5.0)
    s.set_timesteps(4)
    assert len(s.timesteps) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=""), "prompt is empty"),
        (dict(prompt="   "), "prompt is empty"),
        (dict(width=70), "width must be a positive multiple of 16"),
        (dict(height=100), "height must be a positive multiple of 16"),
        (dict(frames=6), "frames must be 4k\\+1.*try 5 or 9"),
        (dict(frames=0), "frames must be 4k\\+1"),
        (dict(steps=0), "steps must be"),
        (dict(shift=0.0), "shift must be > 0"),
        (dict(seed=-5), "seed must be -1 \\(random\\) or a whole number from 0"),
        (dict(seed=2**64), "seed must be -1"),
        (dict(fps=0), "fps must be a whole number >= 1"),
        (dict(compile_backend="cudagraphs"), "compile_backend 'cudagraphs' is not one of inductor"),
    ],
)
def test_validation_messages(kwargs: dict, message: str) -> None:
    args = dict(prompt="a cat", width=64, height=64, frames=5, steps=2, cfg=5.0, shift=5.0)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        validate_request(**args)


def test_validation_accepts_wan_sizes() -> None:
    validate_request("a cat", 832, 480, 81, 30, 6.0, 5.0)
    validate_request("一只猫", 1280, 720, 1, 1, 0.0, 0.5)


def test_write_mp4_and_gallery(tmp_path) -> None:
    import imageio_ffmpeg

    frames = np.random.default_rng(0).random((5, 32, 48, 3), dtype=np.float32)
    path = write_mp4(frames, tmp_path / "v.mp4", fps=8)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (48, 32)
    assert sum(1 for _ in reader) == 5
    g = gallery_frames(frames, count=3)
    assert len(g) == 3 and g[0].dtype == np.uint8 and g[0].shape == (32, 48, 3)


def test_write_mp4_says_when_ffmpeg_wrote_nothing(tmp_path) -> None:
    frames = np.zeros((5, 32, 48, 3), dtype=np.float32)
    with pytest.raises(OSError, match="ffmpeg wrote no video"):
        write_mp4(frames, tmp_path / "v.mp4", fps=-5)


def test_languages() -> None:
    from genesis.apps.wanvideo_gradio_app import WanVideoApp, build_ui
    from genesis.i18n import TEXT, Texts

    assert Texts("zh")("vace_blocks_to_swap") == "VACE 分块数"
    assert Texts("en")("vace_blocks_to_swap") == "VACE blocks to swap"
    assert Texts("en")("auto_hardware_tuning") == "Automatic hardware tuning"
    auto = Texts("auto")
    assert auto.i18n is not None and auto.i18n.translations_dict["zh"]["vram_debug_mode"] == "调试模式"
    assert all(zh and en for zh, en in TEXT.values())
    for lang in ("en", "auto"):
        demo = build_ui(WanVideoApp(lang=lang))
        labels = [getattr(b, "label", None) for b in demo.blocks.values()]
        if lang == "en":
            assert "Enable intelligent VRAM management" in labels and "Debug mode" in labels
        else:
            assert any("vram_debug_mode" in str(x) for x in labels)

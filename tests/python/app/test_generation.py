"""生成过程无错误: tiny generations through the app's handler and the CLI,
text-to-video and image-to-video, and clear errors for bad models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app_helpers import PYTHON_DIR, ROOT, TINY
from genesis.apps.wanvideo_gradio_app import WanVideoApp
from genesis.wan.loading import ModelError, ModelSpec, load_pipeline, transformer_size
from genesis.wan.tiny import tiny_model_path
from genesis.wan.validation import InputError


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> WanVideoApp:
    return WanVideoApp(output_dir=str(tmp_path_factory.mktemp("videos")))


def run(app: WanVideoApp, prompt: str = "a red fox in snow", image=None, scheduler: str = "unipc", seed: int = 7, **kw):
    args = dict(TINY, cfg=5.0, shift=5.0)
    args.update(kw)
    model_path = args.pop("model_path", "")
    model_base = args.pop("model_base", "")
    swap = args.pop("block_swap_enabled", False)
    vram = args.pop("vram", {})
    return app.generate_video(
        prompt, "blurry", image, args["width"], args["height"], args["frames"], args["steps"], args["cfg"],
        args["shift"], scheduler, seed, False, "inductor", swap, **vram, model_path=model_path, model_base=model_base,
    )


def test_tiny_model_is_diffusers_layout() -> None:
    for name in ("tiny", "tiny-i2v"):
        folder = tiny_model_path(name)
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == ("WanPipeline" if name == "tiny" else "WanImageToVideoPipeline")
        for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
            assert (folder / part).is_dir(), part
    assert (tiny_model_path("tiny-i2v") / "image_encoder").is_dir()


def test_text_to_video(app: WanVideoApp) -> None:
    video, gallery, meta = run(app)
    assert Path(video).is_file() and Path(video).stat().st_size > 0
    assert len(gallery) == TINY["frames"] and gallery[0].shape == (64, 64, 3)
    assert meta["task"] == "text-to-video" and meta["steps"] == 2 and len(meta["step_ms"]) == 2
    assert meta["measured_step_ms"] > 0
    assert meta["peak_vram_mb"] == "N/A"  # CPU
    assert "noise" in meta["note"]
    assert meta["transformer_blocks"] == 4 and meta["transformer_size_mb"] > 0


def test_same_seed_same_video(app: WanVideoApp) -> None:
    a = run(app, seed=3)[1]
    b = run(app, seed=3)[1]
    c = run(app, seed=4)[1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("scheduler", ["ddim", "sa_ode_stable/lowstep"])
def test_other_schedulers(app: WanVideoApp, scheduler: str) -> None:
    video, _, meta = run(app, scheduler=scheduler, cfg=1.0)
    assert Path(video).is_file() and meta["scheduler"] == scheduler


def test_image_to_video(app: WanVideoApp) -> None:
    from PIL import Image

    img = Image.new("RGB", (80, 48), (200, 30, 30))
    video, gallery, meta = run(app, image=img)
    assert meta["task"] == "image-to-video" and Path(video).is_file()
    # back to text-to-video after an image run
    assert run(app)[2]["task"] == "text-to-video"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(prompt=""), "prompt is empty"),
        (dict(width=72), "multiple of 16"),
        (dict(frames=8), "4k\\+1"),
    ],
)
def test_bad_input_is_refused(app: WanVideoApp, kw: dict, message: str) -> None:
    prompt = kw.pop("prompt", "a cat")
    with pytest.raises(InputError, match=message):
        run(app, prompt=prompt, **kw)


def test_missing_model_folder(app: WanVideoApp, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model folder not found"):
        run(app, model_path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="no model_index.json"):
        run(app, model_path=str(tmp_path))
    # and the app still works
    assert Path(run(app)[0]).is_file()


def test_corrupt_single_file_checkpoint(app: WanVideoApp, tmp_path: Path) -> None:
    bad = tmp_path / "wan.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelError, match="single-file transformer; also give a base folder"):
        run(app, model_path=str(bad))
    with pytest.raises(ModelError, match="cannot load model from .*wan.safetensors"):
        run(app, model_path=str(bad), model_base=str(tiny_model_path("tiny")))
    assert Path(run(app)[0]).is_file()


def test_corrupt_diffusers_folder(app: WanVideoApp, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_path("tiny"), folder)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ModelError, match="cannot load model from"):
        run(app, model_path=str(folder))
    assert Path(run(app)[0]).is_file()


def test_text_model_refuses_an_image(tmp_path: Path) -> None:
    folder = tmp_path / "t2v"
    shutil.copytree(tiny_model_path("tiny"), folder)
    with pytest.raises(ModelError, match="text-to-video model"):
        load_pipeline(ModelSpec(str(folder)), want_i2v=True)


def test_single_file_checkpoint_with_base(app: WanVideoApp, tmp_path: Path) -> None:
    """A diffusers-named single file + a base folder loads through from_single_file."""
    import torch
    from safetensors.torch import save_file

    original = load_pipeline(ModelSpec("tiny"), want_i2v=False)
    original.load_whole()
    pipe = original.pipe
    ckpt = tmp_path / "wan_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}, str(ckpt))
    loaded = load_pipeline(ModelSpec(str(ckpt), str(tiny_model_path("tiny"))), want_i2v=False)
    assert loaded.file_backed() == ["transformer"]
    loaded.load_whole()
    for (k, a), b in zip(pipe.transformer.state_dict().items(), loaded.pipe.transformer.state_dict().values()):
        assert torch.equal(a, b), k
    assert transformer_size(loaded.pipe.transformer)[1] == 4
    _, _, meta = run(app, model_path=str(ckpt), model_base=str(tiny_model_path("tiny")))
    assert meta["model"].endswith("tiny-wan-v2")


def test_cli_generate(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    meta = tmp_path / "meta.json"
    env_path = str(PYTHON_DIR)
    cmd = [sys.executable, "-m", "genesis.wan.generate", "--prompt", "a cat", "--out", str(out), "--metadata", str(meta),
           "--width", "64", "--height", "64", "--frames", "5", "--steps", "2", "--scheduler", "ddim"]
    import os

    env = dict(os.environ, PYTHONPATH=env_path)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and out.stat().st_size > 0
    m = json.loads(meta.read_text())
    assert m["scheduler"] == "ddim" and m["video"] == str(out)
    bad = subprocess.run(cmd[:-8] + ["--width", "60"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr


def test_progress_reports_every_denoising_step(app: WanVideoApp) -> None:
    calls: list[tuple] = []
    args = dict(TINY, cfg=5.0, shift=5.0)
    app.generate_video("a kite", "", None, args["width"], args["height"], args["frames"], 3, 5.0, 5.0, "unipc", 1,
                       False, "inductor", False, progress=lambda p, **kw: calls.append(p))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_compile_then_uncompile(app: WanVideoApp) -> None:
    a = dict(TINY)
    base = ("a kite", "", None, a["width"], a["height"], a["frames"], a["steps"], 5.0, 5.0, "unipc", 2)
    _, frames_c, meta = app.generate_video(*base, True, "eager", False)
    blocks = app.generator.model(app.default_model, False).pipe.transformer.blocks
    assert meta["compile"] == {"enabled": True, "backend": "eager"}
    assert all(b._compiled_call_impl is not None for b in blocks)
    _, frames, _ = app.generate_video(*base, False, "eager", False)
    assert all(b._compiled_call_impl is None for b in blocks)
    for x, y in zip(frames_c, frames):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_cli_manual_values_imply_manual() -> None:
    from genesis.wan.generate import parse_args, request_from_args

    base = ["--prompt", "a cat", "--out", "x.mp4", "--block-swap"]
    assert request_from_args(parse_args(base)).vram.auto_hardware_tuning
    for extra in (["--blocks-to-swap", "2"], ["--num-cuda-streams", "2"], ["--bandwidth-target", "0.5"],
                  ["--vace-blocks-to-swap", "1"], ["--manual"]):
        v = request_from_args(parse_args(base + extra)).vram
        assert not v.auto_hardware_tuning, extra
    v = request_from_args(parse_args(base + ["--num-cuda-streams", "3"])).vram
    assert (v.num_cuda_streams, v.blocks_to_swap, v.bandwidth_target) == (3, 0, 0.8)  # the rest: defaults


def test_cli_block_swap_debug(tmp_path: Path) -> None:
    import os

    out, meta = tmp_path / "swap.mp4", tmp_path / "swap.json"
    cmd = [sys.executable, "-m", "genesis.wan.generate", "--prompt", "a cat", "--out", str(out), "--metadata", str(meta),
           "--width", "64", "--height", "64", "--frames", "5", "--steps", "2",
           "--block-swap", "--manual", "--blocks-to-swap", "2", "--num-cuda-streams", "2", "--debug"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PYTHON_DIR)), cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[VRAM] 手动配置:" in r.stdout and "✓ 智能 VRAM 管理已启用" in r.stdout
    m = json.loads(meta.read_text())
    assert m["vram_mode"] == "manual" and m["plan"]["streamed_count"] == 2 and m["bytes_streamed"] > 0


def test_tiny_model_past_512_pixels(app: WanVideoApp) -> None:
    """33 patches across (528 px): the tiny model's RoPE table was 32 long."""
    video, _, meta = run(app, width=528, height=64)
    assert Path(video).is_file() and meta["width"] == 528


def test_vace_value_in_auto_mode_keeps_swapping_on(app: WanVideoApp) -> None:
    """Auto mode does not read vace_blocks_to_swap (its slider is locked);
    a value left from manual mode must not turn block swapping off."""
    _, _, meta = run(app, block_swap_enabled=True,
                     vram=dict(auto_hardware_tuning=True, vace_blocks_to_swap=1))
    assert meta["vram_mode"] == "auto" and meta["vram_error"] is None


def test_status_line_says_why_swapping_was_off(app: WanVideoApp) -> None:
    from genesis.apps.wanvideo_gradio_app import done_text
    from genesis.i18n import Texts

    _, _, meta = run(app, block_swap_enabled=True,
                     vram=dict(auto_hardware_tuning=False, blocks_to_swap=10))
    assert meta["vram_mode"] == "off" and "allowed 0-4" in meta["vram_error"]
    assert "Intelligent VRAM management was off: blocks_to_swap=10" in done_text(Texts("en"), meta)
    _, _, ok = run(app)
    assert "VRAM" not in done_text(Texts("en"), ok)


def test_image_model_without_an_image(app: WanVideoApp) -> None:
    with pytest.raises(InputError, match="image-to-video model: give it an input image"):
        run(app, model_path="tiny-i2v")
    assert Path(run(app)[0]).is_file()  # and the app still serves


def test_two_runs_never_share_a_video_file(app: WanVideoApp) -> None:
    a, b = run(app, seed=5)[0], run(app, seed=5)[0]
    assert a != b and Path(a).is_file() and Path(b).is_file()


def test_tiny_image_model_is_named_in_the_metadata(app: WanVideoApp) -> None:
    from PIL import Image

    meta = run(app, image=Image.new("RGB", (64, 64), (10, 200, 30)))[2]
    assert meta["model"] == "tiny-i2v (built-in)"


def test_transformer_stays_file_backed_until_an_unswapped_run(tmp_path: Path) -> None:
    """The transformer loads file-backed (its blocks in the checkpoint, no
    RAM); swapped runs stream them from the file and leave it so; an
    unswapped run reads it whole, with the same video."""
    from genesis.wan.runner import GenerationRequest, WanGenerator
    from genesis.wan.vram_setup import VramSettings

    gen = WanGenerator(output_dir=tmp_path, device="cpu")
    loaded = gen.model(ModelSpec("tiny"), want_i2v=False)
    blocks = list(loaded.pipe.transformer.blocks.parameters())
    assert loaded.file_backed() == ["transformer"] and loaded.whole_reasons == {}
    assert all(p.stride() == (0,) * p.dim() for p in blocks)  # placeholders: no memory
    req = dict(prompt="a red fox", width=64, height=64, frames=5, steps=2, seed=3)
    swapped = gen.generate(GenerationRequest(block_swap_enabled=True,
                                             vram=VramSettings(vram_debug_mode=True), **req))
    assert swapped.metadata["file_backed"] == ["transformer"]
    assert any("transformer: 按文件加载" in line for line in swapped.log)
    assert loaded.file_backed() == ["transformer"]
    whole = gen.generate(GenerationRequest(block_swap_enabled=False, **req))
    assert loaded.file_backed() == [] and whole.metadata["file_backed"] == []
    assert np.array_equal(swapped.frames, whole.frames)
    again = gen.generate(GenerationRequest(block_swap_enabled=True, **req))
    assert np.array_equal(again.frames, whole.frames)


def test_wan22_two_experts_swapped_and_whole_agree(tmp_path: Path) -> None:
    """The built-in Wan2.2 A14B-style model (transformer_2, boundary_ratio):
    both experts load file-backed, both are block-swapped (the second expert
    really streams), and the video equals the unswapped one."""
    from genesis.wan.runner import GenerationRequest, WanGenerator
    from genesis.wan.vram_setup import VramSettings

    gen = WanGenerator(output_dir=tmp_path / "out", device="cpu")
    spec = ModelSpec("tiny-a14b")
    loaded = gen.model(spec, want_i2v=False)
    assert loaded.file_backed() == ["transformer", "transformer_2"]
    assert loaded.pipe.config.boundary_ratio == 0.5
    req = dict(prompt="a red fox", width=64, height=64, frames=5, steps=4, seed=3, shift=1.0,
               model=spec)
    manual = VramSettings(auto_hardware_tuning=False, blocks_to_swap=2)
    swapped = gen.generate(GenerationRequest(block_swap_enabled=True, vram=manual, **req))
    assert swapped.metadata["expert_2"]["streamed_count"] == 2
    assert swapped.metadata["expert_2"]["bytes_streamed"] > 0
    # Both planned against one probe; here they fit together (RAM stands in for VRAM).
    assert swapped.metadata["phases"]["together"] and swapped.metadata["swap_active"]
    assert swapped.metadata["model"] == "tiny-a14b (built-in)"
    assert swapped.metadata["text_encoder_swap"] is None  # it fits the GPU alone
    whole = gen.generate(GenerationRequest(block_swap_enabled=False, **req))
    assert np.array_equal(swapped.frames, whole.frames)

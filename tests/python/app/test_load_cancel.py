"""The app under load and cancellation, through its API (gradio_client)
against an app started in this process, so the tests can look inside:

- a generation cancelled with job.cancel() after its first progress update
  stops, frees its block-swap engine (genesis.blockswap.live_swaps() is
  empty) and its memory (RSS back near the baseline), and the next request
  completes;
- four requests sent at once are queued (never two in the generator at once:
  WanGenerator.max_in_flight, and the runs' time spans do not overlap) and
  all give valid videos;
- out-of-range values sent straight to the API are refused with a message
  naming the value, and the app keeps serving.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from app_helpers import TINY, free_port
from genesis.blockswap import live_swaps


def args(**changes: Any) -> dict[str, Any]:
    a: dict[str, Any] = dict(
        prompt="a lighthouse at dusk", negative_prompt="", image=None, width=TINY["width"], height=TINY["height"],
        frames=TINY["frames"], steps=TINY["steps"], cfg=5.0, shift=5.0, scheduler="unipc", seed=1,
        compile_enabled=False, compile_backend="inductor", block_swap_enabled=True, auto_hardware_tuning=False,
        vram_threshold_percent=50, blocks_to_swap=2, enable_cuda_optimization=True, enable_dram_optimization=True,
        num_cuda_streams=2, bandwidth_target=0.8, offload_txt_emb=False, offload_img_emb=False,
        vace_blocks_to_swap=0, vram_debug_mode=False, model_path="", model_base="",
    )
    a.update(changes)
    return a


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class Live:
    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Iterator[Live]:
    from genesis.apps.wanvideo_gradio_app import WanVideoApp, build_ui

    out = tmp_path_factory.mktemp("videos")
    app = WanVideoApp(output_dir=str(out))
    demo = build_ui(app)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                show_error=True, allowed_paths=[str(out)])
    try:
        yield Live(app, f"http://127.0.0.1:{port}/")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(live: Live) -> Any:
    from gradio_client import Client

    return Client(live.url, verbose=False)


def valid_mp4(video: Any, frames: int) -> bool:
    """An H.264 file ffmpeg decodes into `frames` frames of the tiny size."""
    import imageio_ffmpeg

    path = Path(video["video"] if isinstance(video, dict) else video)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta["size"] == (TINY["width"], TINY["height"]) and sum(1 for _ in reader) == frames


def test_cancel_frees_the_engine_and_the_next_request_completes(live: Live, client: Any) -> None:
    meta = client.predict(**args(), api_name="/generate")[2]  # warm: model loaded, swap used
    assert meta["swap_active"] and meta["streamed_blocks"]
    assert live_swaps() == []
    gc.collect()
    baseline = rss_mib()

    job = client.submit(**args(width=128, height=128, frames=17, steps=100), api_name="/generate")
    deadline = time.time() + 60
    alive_mid_run: list[Any] = []
    while time.time() < deadline:
        st = job.status()
        if st.progress_data and (st.progress_data[0].index or 0) >= 1:
            alive_mid_run = live_swaps()
            break
        time.sleep(0.02)
    assert alive_mid_run, f"no progress update: {job.status()}"
    t0 = time.time()
    job.cancel()
    deadline = time.time() + 30
    while (live.app.generator.in_flight or live_swaps()) and time.time() < deadline:
        time.sleep(0.05)
    stopped_s = time.time() - t0
    assert live.app.cancelled_runs == 1
    assert live.app.generator.in_flight == 0
    assert live_swaps() == [], "a cancelled run left its engine alive"
    assert stopped_s < 5, f"the run took {stopped_s:.1f} s to stop (100 steps were asked)"
    assert job.status().code.name == "CANCELLED"
    gc.collect()
    grown = rss_mib() - baseline
    assert grown < 64, f"RSS {grown:.1f} MiB above the baseline after the cancel"

    meta = client.predict(**args(prompt="after the cancel"), api_name="/generate")[2]
    assert meta["prompt"] == "after the cancel" and meta["swap_active"]
    assert live_swaps() == []


def test_concurrent_requests_are_queued_and_all_complete(live: Live, client: Any) -> None:
    jobs = [
        client.submit(**args(prompt=f"load {i}", block_swap_enabled=i % 2 == 0, seed=i), api_name="/generate")
        for i in range(4)
    ]
    results = [j.result(timeout=120) for j in jobs]
    metas = sorted((r[2] for r in results), key=lambda m: m["started_at"])
    assert {m["prompt"] for m in metas} == {f"load {i}" for i in range(4)}
    for a, b in zip(metas, metas[1:]):
        assert a["finished_at"] <= b["started_at"], (a, b)
    assert all(m["requests_in_flight"] == 1 for m in metas)
    assert live.app.generator.max_in_flight == 1
    for r in results:
        assert valid_mp4(r[0], TINY["frames"])
    assert live_swaps() == []


@pytest.mark.parametrize("bad, message", [
    (dict(vram_threshold_percent=150), "vram_threshold_percent: Value 150"),
    (dict(vram_threshold_percent=5), "vram_threshold_percent: Value 5"),
    (dict(num_cuda_streams=0), "num_cuda_streams: Value 0"),
    (dict(bandwidth_target=2.0), "bandwidth_target: Value 2.0"),
    (dict(blocks_to_swap=99), "blocks_to_swap: Value 99"),
    (dict(width=100), "width must be a positive multiple of 16 \\(got 100\\)"),
])
def test_invalid_api_values_are_refused(client: Any, bad: dict[str, Any], message: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(**args(**bad), api_name="/generate")


def test_the_app_serves_after_invalid_values(live: Live, client: Any) -> None:
    meta = client.predict(**args(prompt="still serving"), api_name="/generate")[2]
    assert meta["prompt"] == "still serving"
    assert live.app.generator.max_in_flight == 1


def test_ranges_are_checked_without_the_ui(live: Live) -> None:
    """Python callers of generate_video skip Gradio's slider checks: the app
    checks the same ranges itself, before loading anything."""
    from genesis.wan.validation import InputError

    a = args(num_cuda_streams=17)
    with pytest.raises(InputError, match="num_cuda_streams=17 is out of range: allowed 1 to 16"):
        live.app.generate_video(*a.values())


@pytest.mark.parametrize("bad, message", [
    # checked before int() would cut them
    (dict(steps=2.7), "steps=2.7 is not a whole number"),
    (dict(width=64.5), "width=64.5 is not a whole number"),
    (dict(frames=5.9), "frames=5.9 is not a whole number"),
    (dict(frames=float("nan")), "frames=nan is out of range"),
    (dict(frames=4097), "frames=4097 is out of range: allowed 1 to 1001"),
    (dict(seed=float("nan")), "seed=nan is out of range"),
    (dict(seed=2**64), "seed=1.84467e\\+19 is out of range"),
    (dict(seed=np.int64(-2)), "seed=-2 is out of range"),
    (dict(seed=-5), "seed=-5 is out of range: allowed -1 to"),
    (dict(compile_enabled=True, compile_backend="cudagraphs"), "compile_backend 'cudagraphs' is not one of"),
])
def test_bad_numbers_name_their_control(live: Live, bad: dict[str, Any], message: str) -> None:
    """Each refused before anything runs, with a message naming the value;
    the next valid request then runs."""
    from genesis.wan.validation import InputError

    with pytest.raises(InputError, match=message):
        live.app.generate_video(*args(**bad).values())
    assert live.app.generate_video(*args(prompt="after a refusal").values())[2]["prompt"] == "after a refusal"


def test_the_largest_seeds_run(live: Live) -> None:
    """torch takes unsigned 64-bit seeds; numpy integers are integers."""
    for seed in (2**64 - 1, np.uint64(2**64 - 1), np.int64(7)):
        assert live.app.generate_video(*args(seed=seed).values())[2]["seed"] == int(seed)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError, "cancel"])
def test_a_run_ended_mid_denoising_frees_its_engine(live: Live, interrupt: Any) -> None:
    """runner.py: an exception, a KeyboardInterrupt or the cancel event in
    the middle of the denoising loop leaves no engine alive, the
    transformer unswapped, and the generator ready for the next request."""
    import threading

    from genesis.blockswap import attached
    from genesis.wan.runner import Cancelled, GenerationRequest
    from genesis.wan.vram_setup import VramSettings

    gen = live.app.generator
    cancel = threading.Event()
    seen: list[Any] = []

    def progress(step: int, total: int) -> None:
        if step == 2:
            seen.extend(live_swaps())
            if interrupt == "cancel":
                cancel.set()
            else:
                raise interrupt("stop here")

    req = GenerationRequest(prompt="interrupted", width=64, height=64, frames=5, steps=20, block_swap_enabled=True,
                            vram=VramSettings(auto_hardware_tuning=False, blocks_to_swap=2, num_cuda_streams=2))
    expected = Cancelled if interrupt == "cancel" else interrupt
    with pytest.raises(expected):
        gen.generate(req, progress=progress, cancel=cancel, log=lambda _line: None)
    assert seen, "no engine was alive mid-run"
    assert live_swaps() == [] and gen.in_flight == 0
    assert all(attached(t) is None for t in gen._loaded.transformers)
    req.prompt = "after"
    assert gen.generate(req, log=lambda _line: None).metadata["swap_active"]
    assert live_swaps() == []

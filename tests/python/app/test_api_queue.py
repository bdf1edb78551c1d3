"""The app's API (gradio_client): two requests at once are queued, not run
together, and a bad request gets a clear error while the app keeps serving."""

from __future__ import annotations

import pytest

from app_helpers import TINY, AppServer


def args(prompt: str = "a lighthouse at dusk", frames: int = TINY["frames"], model: str = "") -> dict:
    return dict(
        prompt=prompt, negative_prompt="", image=None, width=TINY["width"], height=TINY["height"], frames=frames,
        steps=TINY["steps"], cfg=5.0, shift=5.0, scheduler="unipc", seed=1, compile_enabled=False,
        compile_backend="inductor", block_swap_enabled=False, auto_hardware_tuning=True, vram_threshold_percent=50,
        blocks_to_swap=0, enable_cuda_optimization=True, enable_dram_optimization=True, num_cuda_streams=8,
        bandwidth_target=0.8, offload_txt_emb=False, offload_img_emb=False, vace_blocks_to_swap=0,
        vram_debug_mode=False, model_path=model, model_base="",
    )


@pytest.fixture(scope="module")
def client(app_server: AppServer):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def test_api_generates(client) -> None:
    video, gallery, meta, status, _log, _plot = client.predict(**args(), api_name="/generate")
    assert meta["task"] == "text-to-video" and meta["frames"] == TINY["frames"]
    assert video and "完成" in status


def test_two_requests_are_queued_not_concurrent(client) -> None:
    jobs = [client.submit(**args(prompt=f"request {i}"), api_name="/generate") for i in range(2)]
    metas = sorted((j.result(timeout=300)[2] for j in jobs), key=lambda m: m["started_at"])
    assert {m["prompt"] for m in metas} == {"request 0", "request 1"}
    assert metas[0]["finished_at"] <= metas[1]["started_at"], metas


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(frames=6), "4k+1"),
        (dict(prompt=" "), "prompt is empty"),
        (dict(model="/nonexistent/wan-model"), "model folder not found"),
    ],
)
def test_bad_request_gets_a_clear_error_and_the_app_keeps_serving(client, bad: dict, message: str) -> None:
    from gradio_client.exceptions import AppError

    a = args(**bad)
    with pytest.raises(AppError, match=message.replace("+", r"\+")):
        client.predict(**a, api_name="/generate")
    meta = client.predict(**args(), api_name="/generate")[2]
    assert meta["task"] == "text-to-video"

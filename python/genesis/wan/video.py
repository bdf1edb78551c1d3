"""Writing generated frames to an mp4 (imageio-ffmpeg) and picking gallery frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) floats in [0, 1] (diffusers' "np" output) -> uint8."""
    arr = np.asarray(frames)
    if arr.ndim == 5:  # (batch, T, H, W, C): take the first video
        arr = arr[0]
    if arr.ndim != 4:
        raise ValueError(f"expected frames of shape (T, H, W, C), got {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return arr


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 16) -> Path:
    """Writes H.264 yuv420p (plays in browsers); returns the path."""
    import imageio_ffmpeg

    arr = to_uint8_frames(frames)
    t, h, w, _ = arr.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=["-movflags", "+faststart"],
    )
    writer.send(None)
    for i in range(t):
        writer.send(np.ascontiguousarray(arr[i, :, :, :3]))
    writer.close()
    if not path.is_file() or path.stat().st_size == 0:  # ffmpeg may fail without raising
        raise OSError(f"ffmpeg wrote no video to {path}")
    return path


def gallery_frames(frames: np.ndarray, count: int = 8) -> list[np.ndarray]:
    """Up to `count` evenly spaced frames (uint8) for a gallery."""
    arr = to_uint8_frames(frames)
    idx: list[int] = np.unique(np.linspace(0, len(arr) - 1, num=min(count, len(arr))).round().astype(int)).tolist()
    return [arr[i] for i in idx]

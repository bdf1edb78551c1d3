"""Checks of a generation request, with messages a user can act on."""

from __future__ import annotations


class InputError(ValueError):
    """A request the app refuses, with a message meant for the user."""


def validate_request(prompt: str, width: int, height: int, frames: int, steps: int, cfg: float, shift: float) -> None:
    if not prompt or not prompt.strip():
        raise InputError("The prompt is empty: describe the video to generate. / 提示词为空")
    for name, value in (("width", width), ("height", height)):
        if int(value) != value or value < 16 or int(value) % 16:
            raise InputError(f"{name} must be a positive multiple of 16 (got {value}); Wan works on 16-pixel patches")
    if int(frames) != frames or frames < 1 or (int(frames) - 1) % 4:
        n = max(int(frames), 1)
        lo, hi = (n - 1) // 4 * 4 + 1, ((n - 1) // 4 + 1) * 4 + 1
        raise InputError(f"frames must be 4k+1 (1, 5, 9, ..., 81); got {frames}, try {lo} or {hi}")
    if int(steps) != steps or steps < 1:
        raise InputError(f"steps must be an integer >= 1 (got {steps})")
    if cfg < 0:
        raise InputError(f"cfg must be >= 0 (got {cfg})")
    if shift <= 0:
        raise InputError(f"shift must be > 0 (got {shift})")

"""Checks of a generation request, with messages a user can act on."""

from __future__ import annotations


class InputError(ValueError):
    """A request the app refuses, with a message meant for the user."""


# No "cudagraphs": CUDA graphs record weight addresses, which block swapping moves.
COMPILE_BACKENDS: tuple[str, ...] = ("inductor", "aot_eager", "eager")
# -1 asks for a random seed; torch's generators take unsigned 64-bit seeds.
SEED_MAX = 2**64 - 1


def validate_request(prompt: str, width: int, height: int, frames: int, steps: int, cfg: float, shift: float,
                     seed: int = -1, fps: int = 16, compile_backend: str = "inductor") -> None:
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
    if seed != -1 and not (int(seed) == seed and 0 <= seed <= SEED_MAX):
        raise InputError(f"seed must be -1 (random) or a whole number from 0 to {SEED_MAX} (got {seed})")
    if int(fps) != fps or fps < 1:
        raise InputError(f"fps must be a whole number >= 1 (got {fps})")
    if compile_backend not in COMPILE_BACKENDS:
        raise InputError(f"compile_backend {compile_backend!r} is not one of {', '.join(COMPILE_BACKENDS)}")

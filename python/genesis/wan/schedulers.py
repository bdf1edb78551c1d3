"""The seed's scheduler names mapped to real diffusers schedulers.

Wan is a flow-matching model (the transformer predicts a velocity), so every
scheduler here runs in flow-matching form with the user's `shift`:

- "unipc": UniPCMultistepScheduler(prediction_type="flow_prediction",
  use_flow_sigmas=True, flow_shift=shift) - Wan's own default solver.
- "ddim": diffusers' DDIMScheduler has no flow prediction type (only
  epsilon / sample / v_prediction), so it would denoise Wan wrongly. DDIM
  (eta = 0) is first-order DPM-Solver++, so "ddim" is
  DPMSolverMultistepScheduler(solver_order=1, algorithm_type="dpmsolver++",
  prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift).
- "sa_ode_stable/lowstep" (and "sa_ode_stable"): FlowMatchEulerDiscreteScheduler
  (shift=shift), the plain flow ODE Euler solver, stable at very few steps.
- "euler": the same Euler solver under its own name.
"""

from __future__ import annotations

from typing import Any

SCHEDULERS: tuple[str, ...] = ("unipc", "ddim", "sa_ode_stable/lowstep", "sa_ode_stable", "euler")
DEFAULT_SCHEDULER = "unipc"


def make_scheduler(name: str, shift: float, num_train_timesteps: int = 1000) -> Any:
    """A fresh diffusers scheduler for the seed's scheduler `name`."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    if name == "unipc":
        return UniPCMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
        )
    if name == "ddim":
        return DPMSolverMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            solver_order=1,
            algorithm_type="dpmsolver++",
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
        )
    if name in ("sa_ode_stable/lowstep", "sa_ode_stable", "euler"):
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
    raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")

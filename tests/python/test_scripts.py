"""scripts/gpu_check_python.py skips cleanly without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run the script itself")
def test_gpu_check_skips_without_gpu() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_python.py")],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "SKIPPED - no CUDA GPU" in r.stdout

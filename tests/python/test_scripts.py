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


def test_gpu_check_python_logic_on_cpu() -> None:
    """--device cpu runs every check of the GPU script on the host backend."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_python.py"),
                        "--device", "cpu"], capture_output=True, text=True,
                       env=dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[FAIL]" not in r.stdout and "all passed" in r.stdout
    assert "host backend" in r.stdout and "soak: 200 forwards exact" in r.stdout


def _result(mode: str, tokens: int, median: float | None, **extra: object) -> dict:
    r: dict = {"mode": mode, "tokens": tokens, "note": "", "error": ""}
    if median is None:
        r["error"] = extra.pop("error", "RuntimeError: boom. more")
    else:
        r.update(median_s=median, min_s=median, max_s=median, bound_s=1.0, vs_bound=median,
                 peak_vram_bytes=10e9, pinned_bytes=8e9, streamed_bytes_per_forward=8e9)
    r.update(extra)
    return r


def test_gpu_report_combines_runs(tmp_path: Path) -> None:
    import json

    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_report

    meta = {"gpu": "Test GPU", "cap_gb": 24, "reps": 3, "command": "python3 x", "date": "d"}
    runs = {
        "run1": [_result("ceiling", 100, 1.0), _result("genesis", 100, 1.02),
                 _result("mmgp", 100, None), _result("legacy", 100, None)],
        "run2": [_result("mmgp", 100, 2.5), _result("genesis", 100, 1.5),
                 _result("legacy", 100, None, error="skipped: time budget")],
    }
    for name, results in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"meta": meta,
                                                                   "results": results}))
    (tmp_path / "notes.md").write_text("observed: nothing odd")
    rows = {r["mode"]: r for r in gpu_report.combine(gpu_report.load_runs(tmp_path))}
    assert rows["genesis"]["median_s"] == 1.02 and rows["genesis"]["run"] == "run1"
    assert rows["mmgp"]["median_s"] == 2.5 and rows["mmgp"]["run"] == "run2"
    assert rows["legacy"]["run"] == "run1, run2" and "time budget" in rows["legacy"]["error"]
    text = "\n".join(gpu_report.section(tmp_path, tmp_path / "plot.png"))
    assert "genesis 1.020 s = 1.020× the bound (within 3%)" in text
    assert "fastest peer mmgp 2.500 s (2.45× genesis)" in text
    assert "observed: nothing odd" in text
    rows["genesis"]["vs_bound"] = 1.05
    assert "NOT within 3%" in "\n".join(gpu_report.targets(list(rows.values()), 24))


def test_gpu_bench_logic_on_cpu(tmp_path: Path) -> None:
    """bench/gpu_bench.py's modes run on the CPU (tiny model) and write both tables."""
    import json

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--device", "cpu",
                        "--tiny", "--tokens", "4590", "--cap-gb", "0.09",
                        "--modes", "ceiling,genesis,legacy", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {x["mode"]: x for x in json.loads((tmp_path / "results.json").read_text())["results"]}
    for mode in ("ceiling", "genesis", "legacy"):
        assert "median_s" in rows[mode] and rows[mode]["b2b_s"] > 0, rows[mode]
        assert rows[mode]["max_abs_diff_vs_resident"] == 0.0
    md = (tmp_path / "results.md").read_text()
    assert "| genesis | 4590 |" in md and "| predicted s |" in md
    assert rows["genesis"]["predicted_synced_s"] > 0

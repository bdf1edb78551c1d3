#!/usr/bin/env python3
"""The GPU section of docs/BENCHMARKS.md, from stored runs of bench/gpu_bench.py.

    python bench/gpu_report.py docs/gpu/2026-11-27-h100      # prints the section

A session folder holds run1/, run2/, ... (what scripts/device_run.sh wrote to
$OUT): each a results.json, and where that run made them gpu_check.log and
gpu_check_python.log (or app_check.log), and optionally notes.md (included as written). A single
results.json may be given instead. The combined
table keeps, per mode and token count, the first run that measured it (a later
run fills in what an earlier one missed) and names that run; the targets of
the benchmark issue are checked from the same rows.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

GB = 1e9
PEERS = ("legacy", "legacy-default", "diffusers-group", "mmgp")
LOGS = ("gpu_check.log", "gpu_check_python.log", "app_check.log")


def load_runs(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(run name, results.json document) in run order."""
    if path.is_file():
        return [(path.parent.name, json.loads(path.read_text()))]
    return [(p.parent.name, json.loads(p.read_text()))
            for p in sorted(path.glob("run*/results.json"))]


def combine(runs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (mode, tokens): the first measured one, else the first
    attempt (its error or note says why nothing was measured)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for name, doc in runs:
        for r in doc["results"]:
            key = (r["mode"], r["tokens"])
            old = rows.get(key)
            if old is None or ("median_s" in r and "median_s" not in old):
                rows[key] = dict(r, run=name)
            elif "median_s" not in old and "median_s" not in r:  # say why, run by run
                why = (r.get("error") or r.get("note") or "").split(". ")[0]
                old["run"] += f", {name}"
                old["error"] = f"{old.get('error') or old.get('note')}; {name}: {why}"
    return sorted(rows.values(), key=lambda r: (r["tokens"], r["mode"] != "ceiling",
                                                r["mode"] in PEERS, r["mode"]))


def fmt(v: Any, scale: float = 1.0, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v / scale:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The results table, one row per result: gpu_bench.py's results.md and
    the combined table here. The planner's prediction for the synced median
    and the b2b columns when any row has them, the run
    column when the rows come from combine(); the note is the first sentence
    of the error, else the notes."""
    b2b = any("b2b_s" in r or "b2b_note" in r for r in rows)
    predicted = any("predicted_synced_s" in r for r in rows)
    runs = any("run" in r for r in rows)
    head = ["mode", "tokens", "median s", "min–max s", "bound s", "× bound"]
    head += ["predicted s"] if predicted else []
    head += ["b2b s", "b2b × bound"] if b2b else []
    head += ["peak VRAM GB", "host RSS GB", "pinned GB", "streamed GB/fwd", "max diff"]
    head += ["run"] if runs else []
    head += ["note"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        note = (r.get("error") or "; ".join(n for n in (r.get("note"), r.get("b2b_note")) if n))
        note = note.replace("|", "/").split(". ")[0]
        run = [r["run"]] if runs else []
        if "median_s" not in r:
            if "," in r.get("run", ""):
                note = f"{r['run'].split(',')[0]}: {note}"
            out.append("| " + " | ".join([r["mode"], str(r["tokens"])]
                                         + ["–"] * (len(head) - 3 - len(run)) + run + [note])
                       + " |")
            continue
        cells = [r["mode"], str(r["tokens"]), fmt(r["median_s"]),
                 f"{fmt(r['min_s'])}–{fmt(r['max_s'])}", fmt(r.get("bound_s")),
                 fmt(r.get("vs_bound"), digits=2)]
        cells += [fmt(r.get("predicted_synced_s"))] if predicted else []
        cells += [fmt(r.get("b2b_s")), fmt(r.get("b2b_vs_bound"), digits=2)] if b2b else []
        cells += [fmt(r.get("peak_vram_bytes"), GB, 2), fmt(r.get("host_rss_bytes"), GB, 1),
                  fmt(r.get("pinned_bytes"), GB, 2), fmt(r.get("streamed_bytes_per_forward"), GB, 2),
                  fmt(r.get("max_abs_diff_vs_resident"), digits=4)] + run + [note]
        out.append("| " + " | ".join(cells) + " |")
    return out


def targets(rows: list[dict[str, Any]], cap_gb: float) -> list[str]:
    """The benchmark issue's targets, checked per token count."""
    out = []
    for tokens in sorted({r["tokens"] for r in rows}):
        got = {r["mode"]: r for r in rows if r["tokens"] == tokens and "median_s" in r}
        g = got.get("genesis")
        if g is None:
            out.append(f"- {tokens:,} tokens: genesis not measured")
            continue
        peers = {m: got[m]["median_s"] for m in PEERS if m in got}
        fastest = min(peers, key=peers.get) if peers else None
        streamed, pinned = g.get("streamed_bytes_per_forward") or 0, g.get("pinned_bytes") or 0
        out.append(
            f"- {tokens:,} tokens: genesis {g['median_s']:.3f} s = {g['vs_bound']:.3f}× the bound "
            f"({'within' if g['vs_bound'] <= 1.03 else 'NOT within'} 3%); "
            + (f"fastest peer {fastest} {peers[fastest]:.3f} s "
               f"({peers[fastest] / g['median_s']:.2f}× genesis); " if fastest else "no peer; ")
            + f"peak VRAM {g['peak_vram_bytes'] / GB:.2f} GB "
            f"({'under' if g['peak_vram_bytes'] <= cap_gb * GB else 'OVER'} the {cap_gb:g} GB cap); "
            f"pinned {pinned / GB:.2f} GB for {streamed / GB:.2f} GB streamed "
            f"({(pinned / streamed - 1) * 100 if streamed else 0:+.1f}%)")
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """Time per forward over the all-resident time (one denominator for every
    mode), per token count, log scale; genesis' bound marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    measured = [r for r in rows if "median_s" in r]
    ceiling = {r["tokens"]: r["median_s"] for r in measured if r["mode"] == "ceiling"}
    measured = [r for r in measured if r["tokens"] in ceiling]
    tokens = sorted(ceiling)
    modes = list(dict.fromkeys(r["mode"] for r in measured))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(tokens))
    for k, t in enumerate(tokens):
        by = {r["mode"]: r for r in measured if r["tokens"] == t}
        xs = [i + k * width for i, m in enumerate(modes) if m in by]
        bars = ax.bar(xs, [by[m]["median_s"] / ceiling[t] for m in modes if m in by], width,
                      label=f"{t:,} tokens")
        g = by.get("genesis")
        if g and g.get("bound_s"):
            ax.hlines(g["bound_s"] / ceiling[t], -0.5, len(modes) - 0.5, colors=bars[0].get_facecolor(),
                      lw=0.8, ls="--", label=f"genesis' bound, {t:,} tokens")
    ax.set_yscale("log")
    ax.set_xticks([i + width * (len(tokens) - 1) / 2 for i in range(len(modes))], modes,
                  fontsize=8)
    ax.set_ylabel("time per forward ÷ all resident")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def section(path: Path, png: Path | None = None) -> list[str]:
    runs = load_runs(path)
    if not runs:
        raise SystemExit(f"gpu_report: no run*/results.json under {path}")
    rows = combine(runs)
    meta = runs[0][1]["meta"]
    bw = meta.get("bandwidth", {})
    cap = float(meta.get("cap_gb", 24))
    L = [
        f"## GPU: {meta.get('gpu')}",
        "",
        f"Measured {meta.get('date')} on {meta.get('gpu')}, torch "
        f"{meta.get('torch')}, CUDA {meta.get('cuda')}, diffusers {meta.get('diffusers')}; "
        f"model {meta.get('model_kind')}: {meta.get('model_bytes', 0) / GB:.2f} GB in bf16, "
        f"{meta.get('blocks')} blocks, random weights. Streamed modes run under a {cap:g} GB cap "
        "(`torch.cuda.set_per_process_memory_fraction`; genesis planned for it); ceiling without. "
        f"Host-to-device measured by torch: pinned {fmt(bw.get('pinned_gbps'), digits=1)} GB/s, "
        f"pageable {fmt(bw.get('pageable_gbps'), digits=1)} GB/s. Median of "
        f"{meta.get('reps')} forwards after a warm-up, each followed by "
        "`torch.cuda.synchronize()`; bound = max(all-resident time, streamed bytes / pinned "
        "bandwidth). Stored runs and logs: "
        f"`{path.as_posix()}`.",
        "",
        "Runs (the table names which one each row comes from):",
        "",
    ]
    for name, doc in runs:
        m = doc["meta"]
        L.append(f"- {name}: `{m.get('command', '?').split('/bin/', 1)[-1]}` ({m.get('date')}, "
                 f"{m.get('total_s', '?')} s)")
    L += ["", *table(rows), "", "Targets (from the rows above):", "", *targets(rows, cap), ""]
    if png is not None and plot(rows, png):
        L += [f"![GPU benchmark]({png.name})", ""]
    folder = path if path.is_dir() else path.parent
    if (folder / "notes.md").exists():  # what the people who ran it observed
        L += [(folder / "notes.md").read_text().rstrip(), ""]
    for log in LOGS:
        for p in sorted(folder.glob(f"run*/{log}")):
            L += [f"`{p.relative_to(folder).as_posix()}`:", "", "```",
                  *[line.rstrip() for line in p.read_text().splitlines() if line.strip()],
                  "```", ""]
    return L


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: gpu_report.py SESSION_FOLDER|results.json")
    print("\n".join(section(Path(sys.argv[1]))))

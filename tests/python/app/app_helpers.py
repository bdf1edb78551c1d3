"""Helpers of the app tests: the package on sys.path, tiny sizes, and
starting the app as a subprocess on a free localhost port. (A module of its
own name: tests/python/conftest.py exists too, so `import conftest` would be
ambiguous.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PYTHON_DIR = ROOT / "python"
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))

# Tiny generations: fast on 2 CPU cores.
TINY = dict(width=64, height=64, frames=5, steps=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_app(tmp: Path, *extra: str) -> AppServer:
    port = free_port()
    log = tmp / f"app-{port}.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")]), GRADIO_ANALYTICS_ENABLED="False")
    cmd = [sys.executable, "-m", "genesis.apps.wanvideo_gradio_app", "--host", "127.0.0.1", "--port", str(port), "--output-dir", str(tmp / "videos"), *extra]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return AppServer(url, proc, log)
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"app did not start in 120 s:\n{log.read_text(errors='replace')}")


def stop_app(server: AppServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()

"""Fixtures of the app tests: the package on sys.path, one tiny-model cache,
and one app server (a subprocess on a free localhost port) shared by the
browser and API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]
PYTHON_DIR = ROOT / "python"
if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))


def _ensure_libvram() -> None:
    """genesis.vram loads python/genesis/_lib/libvram.so (pip install) or
    $VRAM_LIBRARY; a plain checkout gets libvram built (incrementally) into
    build-app/, its own folder so parallel builds elsewhere don't interfere."""
    if os.environ.get("VRAM_LIBRARY") or (PYTHON_DIR / "genesis" / "_lib" / "libvram.so").exists():
        return
    build = ROOT / "build-app"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "libvram.so"], check=True, capture_output=True)
    os.environ["VRAM_LIBRARY"] = str(build / "libvram.so")


_ensure_libvram()

# Tiny generations: fast on 2 CPU cores.
TINY = dict(width=64, height=64, frames=5, steps=2)


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny-model cache for the session (GENESIS_CACHE_DIR wins if set)."""
    path = Path(os.environ.get("GENESIS_CACHE_DIR") or tmp_path_factory.mktemp("genesis-cache"))
    os.environ["GENESIS_CACHE_DIR"] = str(path)
    return path


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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Iterator[AppServer]:
    server = start_app(tmp_path_factory.mktemp("app"))
    yield server
    stop_app(server)

"""Fixtures of the app tests: one tiny-model cache and one app server
shared by the browser and API tests. libvram comes from tests/python/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from app_helpers import AppServer, start_app, stop_app


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny-model cache for the session (GENESIS_CACHE_DIR wins if set)."""
    path = Path(os.environ.get("GENESIS_CACHE_DIR") or tmp_path_factory.mktemp("genesis-cache"))
    os.environ["GENESIS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Iterator[AppServer]:
    server = start_app(tmp_path_factory.mktemp("app"))
    yield server
    stop_app(server)

"""Makes genesis importable with a libvram to load: the installed package's
own copy when present, else $VRAM_LIBRARY, else a fresh CMake build in
build-py/ (built here when missing or older than the sources)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
BUILD_DIR = ROOT / "build-py"


def _sources_newer(lib: Path) -> bool:
    built = lib.stat().st_mtime
    files = list((ROOT / "src").glob("*.[ch]")) + [ROOT / "include" / "vram.h"]
    return any(f.stat().st_mtime > built for f in files)


def _build() -> Path:
    lib = BUILD_DIR / "libvram.so"
    if lib.exists() and not _sources_newer(lib):
        return lib
    subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(BUILD_DIR), "-G", "Ninja",
                           "-DVRAM_WERROR=OFF"], stdout=subprocess.DEVNULL)
    subprocess.check_call(["cmake", "--build", str(BUILD_DIR), "-j2", "--target", "libvram.so"],
                          stdout=subprocess.DEVNULL)
    return lib


if not os.environ.get("VRAM_LIBRARY"):
    shipped = PYTHON_DIR / "genesis" / "_lib" / "libvram.so"
    try:
        import genesis  # noqa: F401  (installed: it brings its own library)

        installed = (Path(genesis.__file__).parent / "_lib" / "libvram.so").exists()
    except ImportError:
        installed = False
    if not installed or (shipped.exists() and _sources_newer(shipped)):
        os.environ["VRAM_LIBRARY"] = str(_build())

if str(PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(PYTHON_DIR))

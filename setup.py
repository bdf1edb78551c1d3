"""Builds libvram with CMake while building genesis, and ships the shared
library inside the package as genesis/_lib/libvram.so (loaded with ctypes:
nothing here is compiled against Python or torch)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LIB_NAME = "libvram.so"


def _tool(name: str) -> str | None:
    """The pip-installed cmake/ninja when present (build isolation), else PATH."""
    if name == "cmake":
        try:
            import cmake  # type: ignore[import-not-found]

            path = Path(cmake.CMAKE_BIN_DIR) / "cmake"
            if path.exists():
                return str(path)
        except ImportError:
            pass
    if name == "ninja":
        try:
            import ninja  # type: ignore[import-not-found]

            path = Path(ninja.BIN_DIR) / "ninja"
            if path.exists():
                return str(path)
        except ImportError:
            pass
    return shutil.which(name)


def build_libvram(dest_dir: Path, build_dir: Path) -> Path:
    """Configures and builds the `vram` target only, then copies the real
    file (not the soname symlink) to dest_dir/libvram.so."""
    cmake = _tool("cmake")
    if cmake is None:
        raise RuntimeError("building libvram needs CMake (pip install cmake)")
    args = [cmake, "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            "-DVRAM_WERROR=OFF"]
    ninja = _tool("ninja")
    if ninja is not None:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    subprocess.check_call(args)
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    # Ninja: name the file (the `vram` CLI executable shadows the target name).
    target = LIB_NAME if ninja is not None else "vram"
    subprocess.check_call([cmake, "--build", str(build_dir), "--target", target, "-j", jobs])
    built = (build_dir / LIB_NAME).resolve()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / LIB_NAME
    shutil.copyfile(built, dest)
    return dest


class BuildPyWithLibvram(build_py):
    def run(self) -> None:
        super().run()
        build_dir = ROOT / "build-pip"
        if getattr(self, "editable_mode", False):
            # Editable installs import from python/; the library goes next to
            # the sources (git-ignored).
            build_libvram(ROOT / "python" / "genesis" / "_lib", build_dir)
        else:
            build_libvram(Path(self.build_lib) / "genesis" / "_lib", build_dir)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / "genesis" / "_lib" / LIB_NAME))
        return outputs


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for the platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithLibvram}, distclass=BinaryDistribution)

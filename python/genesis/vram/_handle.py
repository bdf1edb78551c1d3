"""The lifecycle every libvram handle shares: the raw pointer, close() with
the matching vram_*_free, and use after close raising instead of crashing."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from . import _ffi


class Handle:
    _free_name: ClassVar[str]  # vram_*_free / vram_engine_destroy

    def __init__(self, handle: int) -> None:
        self._h: int | None = handle

    @property
    def handle(self) -> int:
        if not self._h:
            raise ValueError(f"{type(self).__name__} was closed")
        return self._h

    @property
    def alive(self) -> bool:
        return bool(self._h)

    def close(self) -> None:
        if self._h:
            free: Callable[[int], Any] = getattr(_ffi.lib, self._free_name)
            free(self._h)
            self._h = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass  # interpreter shutdown: the library may already be gone

    def __copy__(self) -> Any:
        raise TypeError(f"a {type(self).__name__} owns a libvram handle and cannot be copied")

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self.__copy__()

    def __reduce__(self) -> Any:  # pickling would copy the raw pointer too
        return self.__copy__()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

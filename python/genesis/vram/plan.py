"""Plan: libvram's decision of which blocks stay resident and which stream."""

from __future__ import annotations

import ctypes
import functools
import json
from typing import Any

from . import _ffi
from ._handle import Handle
from .errors import NotFound, check
from .hardware import Hardware
from .layout import Layout

OPTION_NAMES: tuple[str, ...] = tuple(_ffi.PlanOptions.field_names())

_EXPLAIN_FORMATS = {"zh": _ffi.EXPLAIN_ZH, "en": _ffi.EXPLAIN_EN, "json": _ffi.EXPLAIN_JSON}


def default_options() -> dict[str, Any]:
    """vram_plan_options_init's defaults, as a dict."""
    o = _ffi.PlanOptions.new()
    _ffi.lib.vram_plan_options_init(ctypes.byref(o))
    return o.to_dict()


def option_range(name: str) -> dict[str, Any]:
    """vram_plan_option_range: the values libvram allows for the numeric plan
    option `name`: min, max (inf: unbounded), min_excluded, integer, step,
    manual_only, zero_unset (0 means "not set").
    NotFound when `name` is not a numeric option. blocks_to_swap and
    vace_blocks_to_swap are further bounded by the model's block counts."""
    r = _ffi.OptionRange.new()
    check(_ffi.lib.vram_plan_option_range(name.encode(), ctypes.byref(r)),
          "vram_plan_option_range")
    return r.to_dict()


@functools.cache
def manual_only_options() -> frozenset[str]:
    """The plan options libvram reads only with auto_hardware_tuning off (their
    ranges say manual_only): an auto plan is the same whatever their values."""
    names = set()
    for name in OPTION_NAMES:
        try:
            if option_range(name)["manual_only"]:
                names.add(name)
        except NotFound:  # a switch or an index: no range
            pass
    return frozenset(names)


def make_options(**options: Any) -> _ffi.PlanOptions:
    """Defaults overridden by `options` (field names of vram_plan_options),
    checked by vram_plan_options_validate (RangeError names the field)."""
    o = _ffi.PlanOptions.new()
    _ffi.lib.vram_plan_options_init(ctypes.byref(o))
    for k, v in options.items():
        if k not in OPTION_NAMES:
            raise TypeError(f"unknown plan option {k!r}; known: {', '.join(OPTION_NAMES)}")
        if v is None:
            continue
        setattr(o, k, v)
    check(_ffi.lib.vram_plan_options_validate(ctypes.byref(o)), "vram_plan_options_validate")
    return o


class Plan(Handle):
    """A vram_plan. Keeps its layout and hardware alive."""

    _free_name = "vram_plan_free"

    def __init__(self, handle: int, layout: Layout, hw: Hardware) -> None:
        super().__init__(handle)
        self.layout = layout
        self.hw = hw

    @classmethod
    def create(cls, layout: Layout, hw: Hardware, **options: Any) -> Plan:
        o = make_options(**options)
        h = ctypes.c_void_p()
        check(_ffi.lib.vram_plan_create(layout.handle, hw.handle, ctypes.byref(o),
                                        ctypes.byref(h)), "vram_plan_create")
        return cls(h.value or 0, layout, hw)

    def stream_more(self) -> Plan:
        """A plan of the same layout and hardware streaming more blocks (the
        out-of-memory retry policy of vram_plan_stream_more); DoesNotFit
        when nothing more can stream. Its options() say what changed."""
        h = ctypes.c_void_p()
        check(_ffi.lib.vram_plan_stream_more(self.handle, self.layout.handle, self.hw.handle,
                                             ctypes.byref(h)), "vram_plan_stream_more")
        return type(self)(h.value or 0, self.layout, self.hw)

    def summary(self) -> dict[str, Any]:
        s = _ffi.PlanSummary.new()
        check(_ffi.lib.vram_plan_get_summary(self.handle, ctypes.byref(s)),
              "vram_plan_get_summary")
        return s.to_dict()

    def options(self) -> dict[str, Any]:
        o = _ffi.PlanOptions.new()
        check(_ffi.lib.vram_plan_get_options(self.handle, ctypes.byref(o)),
              "vram_plan_get_options")
        return o.to_dict()

    def block(self, index: int) -> dict[str, Any]:
        b = _ffi.BlockPlan.new()
        check(_ffi.lib.vram_plan_block(self.handle, index, ctypes.byref(b)), "vram_plan_block")
        d = b.to_dict()
        d["streamed"] = d["placement"] == _ffi.PLACE_STREAMED
        d["tier_name"] = _ffi.TIER_NAMES[d["tier"]] if 0 <= d["tier"] < 4 else str(d["tier"])
        return d

    def blocks(self) -> list[dict[str, Any]]:
        return [self.block(i) for i in range(int(self.summary()["block_count"]))]

    def placement(self) -> list[tuple[int, int, int]]:
        """(placement, tier, slot) per block: what the engine depends on."""
        return [(b["placement"], b["tier"], b["slot"]) for b in self.blocks()]

    def streamed_blocks(self) -> list[int]:
        return [b["block"] for b in self.blocks() if b["streamed"]]

    def explain(self, fmt: str = "zh") -> Any:
        """'zh' / 'en': the debug text; 'json': a dict."""
        if fmt not in _EXPLAIN_FORMATS:
            raise ValueError(f"explain format must be one of {sorted(_EXPLAIN_FORMATS)}, got {fmt!r}")
        out = ctypes.c_void_p()
        check(_ffi.lib.vram_plan_explain(self.handle, _EXPLAIN_FORMATS[fmt], ctypes.byref(out)),
              "vram_plan_explain")
        text = _ffi.take_string(out)
        return json.loads(text) if fmt == "json" else text

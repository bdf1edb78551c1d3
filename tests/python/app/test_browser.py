"""UI 参数正确显示 / 预设配置正确应用 / 手动模式 / 生成过程无错误, in a real
headless browser: Debian's chromium + chromedriver driven by Selenium."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from app_helpers import TINY, AppServer
from genesis.apps.wanvideo_gradio_app import PRESETS, apply_preset
from genesis.i18n import TEXT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)), reason="needs Debian's chromium and chromium-driver"
)

SLIDERS = ("width", "height", "steps", "cfg", "shift", "vram_threshold_percent", "blocks_to_swap",
           "num_cuda_streams", "bandwidth_target", "vace_blocks_to_swap")
CHECKBOXES = ("compile_enabled", "block_swap_enabled", "auto_hardware_tuning", "enable_cuda_optimization",
              "enable_dram_optimization", "offload_txt_emb", "offload_img_emb", "vram_debug_mode")
DROPDOWNS = ("scheduler", "compile_backend")
NUMBERS = ("frames", "seed")
TEXTBOXES = ("prompt", "negative_prompt", "model_path", "model_base")
# The seed's labels (Chinese, as it writes them; VACE, not its "VAE" typo).
SEED_LABELS = {
    "block_swap_enabled": "启用智能 VRAM 管理",
    "auto_hardware_tuning": "自动硬件调优",
    "vram_threshold_percent": "VRAM 使用阈值",
    "blocks_to_swap": "手动分块数",
    "enable_cuda_optimization": "启用 CUDA 优化",
    "enable_dram_optimization": "启用 DRAM 优化",
    "num_cuda_streams": "CUDA 流数量",
    "bandwidth_target": "带宽目标",
    "offload_txt_emb": "卸载文本嵌入",
    "offload_img_emb": "卸载图像嵌入",
    "vace_blocks_to_swap": "VACE 分块数",
    "vram_debug_mode": "调试模式",
}
# (min, max, default) as the brief and the seed give them
RANGES = {
    "vram_threshold_percent": (10, 95, 50),
    "blocks_to_swap": (0, 40, 0),
    "num_cuda_streams": (1, 16, 8),
    "bandwidth_target": (0.1, 1, 0.8),
    "vace_blocks_to_swap": (0, 15, 0),
}


@pytest.fixture(scope="module")
def browser() -> Iterator["object"]:
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,3200", "--lang=zh-CN"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=opts)
    drv.implicitly_wait(0)
    yield drv
    drv.quit()


class Page:
    def __init__(self, drv, url: str) -> None:
        from selenium.webdriver.common.by import By

        self.drv, self.By = drv, By
        drv.get(url)
        self.wait_for(lambda: self.drv.find_elements(By.CSS_SELECTOR, "#generate"), "the app to render")

    def wait_for(self, cond: Callable[[], object], what: str, timeout: float = 60) -> object:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = cond()
                if v:
                    return v
            except Exception:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def el(self, css: str):
        return self.drv.find_element(self.By.CSS_SELECTOR, css)

    def value(self, eid: str):
        if eid in SLIDERS:
            return float(self.el(f"#{eid} input[data-testid=number-input]").get_attribute("value"))
        if eid in CHECKBOXES:
            return self.el(f"#{eid} input[type=checkbox]").is_selected()
        if eid in DROPDOWNS:
            return self.el(f"#{eid} input[role=combobox]").get_attribute("value")
        if eid in NUMBERS:
            return float(self.el(f"#{eid} input[type=number]").get_attribute("value"))
        if eid in TEXTBOXES:
            return self.el(f"#{eid} textarea").get_attribute("value")
        raise KeyError(eid)

    def label(self, eid: str) -> str:
        if eid in CHECKBOXES:
            return self.el(f"#{eid} span.label-text").text.strip()
        return self.el(f"#{eid} [data-testid=block-info]").text.strip()

    def set_number(self, eid: str, value: float) -> None:
        from selenium.webdriver.common.keys import Keys

        css = f"#{eid} input[data-testid=number-input]" if eid in SLIDERS else f"#{eid} input[type=number]"
        box = self.el(css)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(str(value))
        box.send_keys(Keys.TAB)
        self.wait_for(lambda: abs(self.value(eid) - value) < 1e-6, f"{eid} = {value}", 10)

    def set_text(self, eid: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.el(f"#{eid} textarea")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(text)
        box.send_keys(Keys.TAB)

    def click_checkbox(self, eid: str) -> None:
        self.el(f"#{eid} input[type=checkbox]").click()

    def preset(self, name: str) -> None:
        self.el(f'#preset label[data-testid="{name}-radio-label"]').click()

    def enabled(self, eid: str) -> bool:
        return self.el(f"#{eid} input[data-testid=number-input]").is_enabled()

    def text(self, eid: str) -> str:
        return self.el(f"#{eid}").text


@pytest.fixture(scope="module")
def page(browser, app_server: AppServer) -> Page:
    return Page(browser, app_server.url)


def test_every_control_is_shown_with_the_seeds_labels(page: Page) -> None:
    for eid in SLIDERS + CHECKBOXES + DROPDOWNS + NUMBERS + TEXTBOXES + ("image", "preset", "generate", "video_output",
                                                                         "frames_gallery", "metadata", "memory_monitor", "timeline_plot"):
        assert page.el(f"#{eid}").is_displayed(), eid
    for eid, label in SEED_LABELS.items():
        assert page.label(eid) == label, eid
    assert TEXT["vace_blocks_to_swap"][0] == "VACE 分块数"
    for eid, (lo, hi, default) in RANGES.items():
        rng = page.el(f"#{eid} input[type=range]")
        assert float(rng.get_attribute("min")) == lo and float(rng.get_attribute("max")) == hi, eid
        assert page.value(eid) == default, eid
    assert page.value("auto_hardware_tuning") is True
    assert page.value("enable_cuda_optimization") is True and page.value("enable_dram_optimization") is True
    for eid in ("offload_txt_emb", "offload_img_emb", "vram_debug_mode"):
        assert page.value(eid) is False
    assert "噪声" in page.text("tiny_notice")  # says the tiny model's output is noise
    radios = [e.get_attribute("value") for e in page.drv.find_elements(page.By.CSS_SELECTOR, "#preset input[type=radio]")]
    assert radios == list(PRESETS)


def test_presets_set_the_controls(page: Page) -> None:
    outputs = ("steps", "cfg", "shift", "scheduler", "compile_enabled", "block_swap_enabled", "auto_hardware_tuning",
               "vram_threshold_percent")
    for name in ("Fast Preview", "Memory Optimized", "High Quality", "Speed Optimized", "Standard", "Default"):
        page.preset(name)
        want = apply_preset(name)
        page.wait_for(lambda: tuple(page.value(o) for o in outputs) == want, f"preset {name} -> {want}", 20)


def test_manual_mode_is_shown_and_enables_manual_controls(page: Page) -> None:
    page.preset("Memory Optimized")  # block swap on, auto tuning on
    page.wait_for(lambda: "自动调优" in page.text("vram_mode"), "auto mode line")
    manual = ("blocks_to_swap", "num_cuda_streams", "bandwidth_target", "vace_blocks_to_swap")
    assert not any(page.enabled(m) for m in manual)  # auto mode does not read them
    assert page.enabled("vram_threshold_percent")
    page.click_checkbox("auto_hardware_tuning")
    page.wait_for(lambda: "手动" in page.text("vram_mode"), "manual mode line")
    page.wait_for(lambda: all(page.enabled(m) for m in manual), "manual controls enabled")
    page.click_checkbox("block_swap_enabled")
    page.wait_for(lambda: "已关闭" in page.text("vram_mode"), "off mode line")
    page.preset("Default")


def test_generate_in_the_browser_and_recover_from_bad_input(page: Page) -> None:
    page.preset("Default")
    page.wait_for(lambda: page.value("steps") == 30, "default preset")
    page.set_text("prompt", "a small boat on a lake")
    page.set_number("width", TINY["width"])
    page.set_number("height", TINY["height"])
    page.set_number("steps", TINY["steps"])
    page.set_number("frames", 6)  # not 4k+1
    page.el("#generate").click()
    page.wait_for(lambda: "4k+1" in page.drv.find_element(page.By.TAG_NAME, "body").text, "the error message", 60)
    page.set_number("frames", TINY["frames"])
    page.el("#generate").click()
    page.wait_for(lambda: page.drv.find_elements(page.By.CSS_SELECTOR, "#video_output video[src]"), "the video", 180)
    page.wait_for(lambda: "text-to-video" in page.text("metadata"), "the metadata", 30)
    status = page.el("#status textarea").get_attribute("value")
    assert "完成" in status and "noise" in status
    assert len(page.drv.find_elements(page.By.CSS_SELECTOR, "#frames_gallery img")) >= 1
    meta = page.text("metadata")
    for key in ("measured_step_ms", "peak_vram_mb", "scheduler"):
        assert key in meta


def test_debug_log_and_timeline_in_the_browser(page: Page, tmp_path: Path) -> None:
    page.preset("Memory Optimized")  # block swap on, auto tuning, threshold 40
    page.wait_for(lambda: page.value("block_swap_enabled") is True, "block swap on")
    assert not page.drv.find_elements(page.By.CSS_SELECTOR, "#debug_log textarea")  # hidden until debug mode
    page.click_checkbox("auto_hardware_tuning")  # manual: stream 2 of the 4 blocks
    page.wait_for(lambda: page.enabled("blocks_to_swap"), "manual controls")
    page.set_number("blocks_to_swap", 2)
    page.click_checkbox("vram_debug_mode")
    page.wait_for(lambda: page.drv.find_elements(page.By.CSS_SELECTOR, "#debug_log textarea"), "the debug log box")
    page.set_text("prompt", "a windmill")
    page.set_number("width", TINY["width"])
    page.set_number("height", TINY["height"])
    page.set_number("steps", TINY["steps"])
    page.set_number("frames", TINY["frames"])
    before = page.el("#status textarea").get_attribute("value")
    page.el("#generate").click()
    page.wait_for(lambda: page.el("#status textarea").get_attribute("value") != before
                  and "完成" in page.el("#status textarea").get_attribute("value"), "the run", 180)
    log = page.el("#debug_log textarea").get_attribute("value")
    for section in ("[VRAM] 当前状态:", "[VRAM] VRAM-DRAM 平衡分析:", "[VRAM] 手动配置:", "  分块数: 2", "✓ 智能 VRAM 管理已启用"):
        assert section in log, log
    page.wait_for(lambda: page.drv.find_elements(page.By.CSS_SELECTOR, "#timeline_plot img, #timeline_plot svg"), "the timeline plot", 30)
    meta = page.text("metadata").replace("\n", "")
    assert '"vram_mode":"manual"' in meta
    shot = tmp_path / "app.png"
    page.drv.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("GENESIS_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)

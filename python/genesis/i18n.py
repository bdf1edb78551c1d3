"""UI text of the genesis apps: Chinese as the seed writes it, and English.

LANGS: "zh" and "en" render plain strings; "auto" hands both to gr.I18n so
the browser's locale picks (English for locales other than Chinese)."""

from __future__ import annotations

from typing import Any

LANGS = ("zh", "en", "auto")

# key: (Chinese, English)
TEXT: dict[str, tuple[str, str]] = {
    "title": ("# Genesis WanVideo：智能 VRAM 管理", "# Genesis WanVideo: intelligent VRAM management"),
    "tiny_notice": (
        "⚠️ 当前使用内置的**微型随机权重模型**（无需下载，可在 CPU 上运行）：输出只是噪声。"
        "要生成真实视频，请在“模型”中填写 Wan 2.1/2.2 模型文件夹（diffusers 格式）或 .safetensors 检查点。",
        "⚠️ The built-in **tiny random-weight model** is loaded (no download, runs on a CPU): its output "
        "is noise. For real videos, enter a Wan 2.1/2.2 model folder (diffusers layout) or a .safetensors "
        "checkpoint under Model.",
    ),
    "model": ("模型（文件夹、.safetensors、tiny 或 tiny-a14b）",
              "Model (folder, .safetensors, tiny or tiny-a14b)"),
    "model_base": ("基础模型文件夹（单文件检查点用）", "Base folder (for a single-file checkpoint)"),
    "prompt": ("提示词", "Prompt"),
    "negative_prompt": ("负面提示词", "Negative prompt"),
    "image": ("输入图像（可选，图生视频）", "Input image (optional, image-to-video)"),
    "preset": ("预设", "Preset"),
    "width": ("宽度", "Width"),
    "height": ("高度", "Height"),
    "frames": ("帧数 (4k+1)", "Frames (4k+1)"),
    "steps": ("步数", "Steps"),
    "cfg": ("CFG 引导强度", "CFG scale"),
    "shift": ("Shift", "Shift"),
    "scheduler": ("采样器", "Scheduler"),
    "seed": ("随机种子 (-1 = 随机)", "Seed (-1 = random)"),
    "optimization": ("优化", "Optimization"),
    "compile_enabled": ("启用 torch.compile", "Enable torch.compile"),
    "compile_backend": ("编译后端", "Compile backend"),
    "vram_section": ("智能 VRAM 管理", "Intelligent VRAM management"),
    "block_swap_enabled": ("启用智能 VRAM 管理", "Enable intelligent VRAM management"),
    "auto_hardware_tuning": ("自动硬件调优", "Automatic hardware tuning"),
    "vram_threshold_percent": ("VRAM 使用阈值", "VRAM usage threshold"),
    "advanced": ("高级参数", "Advanced parameters"),
    "blocks_to_swap": ("手动分块数", "Blocks to swap (manual)"),
    "blocks_to_swap_info": ("0 = 自动", "0 = automatic"),
    "enable_cuda_optimization": ("启用 CUDA 优化", "Enable CUDA optimization"),
    "enable_dram_optimization": ("启用 DRAM 优化", "Enable DRAM optimization"),
    "num_cuda_streams": ("CUDA 流数量", "CUDA streams"),
    "bandwidth_target": ("带宽目标", "Bandwidth target"),
    "offload_txt_emb": ("卸载文本嵌入", "Offload text embedding"),
    "offload_img_emb": ("卸载图像嵌入", "Offload image embedding"),
    # The seed labels this "VAE 分块数", but the parameter swaps VACE blocks.
    "vace_blocks_to_swap": ("VACE 分块数", "VACE blocks to swap"),
    "vram_debug_mode": ("调试模式", "Debug mode"),
    "mode_off": ("模式：智能 VRAM 管理已关闭（整个模型放在 GPU 上）", "Mode: intelligent VRAM management off (whole model on the GPU)"),
    "mode_auto": (
        "模式：**自动调优**（分块数、CUDA 流和带宽目标由硬件与模型自动计算；手动参数不生效）",
        "Mode: **automatic tuning** (blocks, CUDA streams and bandwidth target computed from the hardware and model; manual values unused)",
    ),
    "mode_manual": (
        "模式：**手动**（使用手动分块数、CUDA 流数量和带宽目标）",
        "Mode: **manual** (uses the manual blocks, CUDA streams and bandwidth target)",
    ),
    "generate": ("生成视频", "Generate video"),
    "status": ("状态", "Status"),
    "video": ("视频", "Video"),
    "frames_gallery": ("帧", "Frames"),
    "metadata": ("元数据", "Metadata"),
    "debug_log": ("调试日志", "Debug log"),
    "timeline": ("块拷贝与计算时间线", "Block copy and compute timeline"),
    "monitor": ("实时内存监控", "Live memory monitor"),
    "ready": ("就绪", "Ready"),
    "done": ("完成", "Done"),
    "vram_off": ("智能 VRAM 管理未启用", "Intelligent VRAM management was off"),
}


class Texts:
    """Looks up UI text for one language."""

    def __init__(self, lang: str = "zh") -> None:
        if lang not in LANGS:
            raise ValueError(f"unknown language {lang!r}; expected one of {LANGS}")
        self.lang = lang
        self._i18n: Any = None
        if lang == "auto":
            import gradio as gr

            self._i18n = gr.I18n(
                zh={k: v[0] for k, v in TEXT.items()},
                en={k: v[1] for k, v in TEXT.items()},
            )

    @property
    def i18n(self) -> Any:
        """The gr.I18n to pass to launch() ("auto" only, else None)."""
        return self._i18n

    def __call__(self, key: str) -> Any:
        if self._i18n is not None:
            return self._i18n(key)
        return self.plain(key)

    def plain(self, key: str) -> str:
        """Plain text for values computed at run time (status lines): the
        browser-side translation only applies to labels."""
        zh, en = TEXT[key]
        return en if self.lang == "en" else zh

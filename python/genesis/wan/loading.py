"""Loading Wan 2.1 / 2.2 pipelines from local files only (no hub access).

A model is named by a spec:
- "tiny" (default) or "tiny-i2v": the built-in random-weight model (genesis.wan.tiny);
- a folder in diffusers layout (it has model_index.json);
- a single-file transformer checkpoint (.safetensors, original Wan, ComfyUI or
  diffusers naming), which needs a diffusers-layout base folder for the text
  encoder, VAE, tokenizer and the transformer config.

The transformer(s) load file-backed when their safetensors are in the asked
dtype (genesis.loading.open_file_backed): only the weights outside the
blocks are read; block swapping streams the blocks from the file, and an
unswapped run reads them whole first (LoadedModel.load_whole). So a 28 GB
checkpoint needs about its pinned budget of RAM, not 28 GB. A file that
cannot (float32 weights for a bf16 run, float8) loads whole, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..vram import VramError
from . import tiny


class ModelError(RuntimeError):
    """A model that cannot be loaded, with a message meant for the user."""


@dataclass(frozen=True)
class ModelSpec:
    model: str  # "tiny", "tiny-i2v", a folder or a .safetensors file
    base: str = ""  # diffusers-layout folder for a single-file checkpoint

    @property
    def is_tiny(self) -> bool:
        return self.model.strip() in ("", *tiny.TINY_NAMES)

    def tiny_name(self, i2v: bool) -> str:
        """The built-in tiny model a tiny spec runs: an input image (i2v)
        takes the tiny image-to-video model (there is no tiny I2V A14B)."""
        model = self.model.strip()
        return tiny.TINY_I2V if (i2v or model == tiny.TINY_I2V) else model or tiny.TINY_T2V


TRANSFORMERS = ("transformer", "transformer_2")  # Wan2.2 A14B has two experts


@dataclass
class LoadedModel:
    pipe: Any  # WanPipeline or WanImageToVideoPipeline
    spec: ModelSpec
    path: Path  # the diffusers folder the pipeline came from
    is_tiny: bool
    i2v: bool
    # Why a transformer loaded whole rather than file-backed, by attribute.
    whole_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def transformers(self) -> list[Any]:
        """The denoising transformer(s): Wan2.2 A14B has two experts."""
        return [t for t in (getattr(self.pipe, n, None) for n in TRANSFORMERS) if t is not None]

    def file_backed(self) -> list[str]:
        from genesis.loading import file_source

        return [n for n in TRANSFORMERS
                if (m := getattr(self.pipe, n, None)) is not None and file_source(m) is not None]

    def load_whole(self) -> None:
        """Reads file-backed transformers' blocks into torch memory, for a
        run without block swapping; they stay loaded."""
        from genesis.loading import file_source
        from genesis.modelinfo import pack_model

        for model in self.transformers:
            source = file_source(model)
            if source is not None:
                source.materialize(model, pack_model(model), source.rest_device)


def _read_index(folder: Path) -> dict[str, Any]:
    index = folder / "model_index.json"
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    if not index.is_file():
        raise ModelError(f"{folder} is not a diffusers model folder (no model_index.json)")
    try:
        return json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {index}: {e}") from e


def _is_i2v(index: dict[str, Any]) -> bool:
    return "ImageToVideo" in str(index.get("_class_name", ""))


def resolve_folder(spec: ModelSpec, want_i2v: bool) -> tuple[Path, Path | None]:
    """(diffusers folder, single-file checkpoint or None) for a spec."""
    model = spec.model.strip()
    if spec.is_tiny:
        return tiny.tiny_model_path(spec.tiny_name(want_i2v)), None
    path = Path(model).expanduser()
    if path.suffix in (".safetensors", ".sft"):
        if not path.is_file():
            raise ModelError(f"checkpoint not found: {path}")
        if not spec.base.strip():
            raise ModelError(
                f"{path.name} is a single-file transformer; also give a base folder in diffusers "
                "layout (text encoder, VAE, tokenizer, transformer config), e.g. Wan2.1-T2V-14B-Diffusers"
            )
        return Path(spec.base.strip()).expanduser(), path
    if not path.exists():
        raise ModelError(f"model folder not found: {path}")
    return path, None


def load_pipeline(spec: ModelSpec, want_i2v: bool, torch_dtype: Any = None) -> LoadedModel:
    """Loads the pipeline on the CPU (placement is the block swapper's job).

    want_i2v selects WanImageToVideoPipeline; a text-to-video model asked for
    image-to-video is refused with a clear message."""
    import torch
    from diffusers import WanImageToVideoPipeline, WanPipeline, WanTransformer3DModel

    folder, checkpoint = resolve_folder(spec, want_i2v)
    index = _read_index(folder)
    i2v = _is_i2v(index)
    if want_i2v and not i2v:
        raise ModelError(
            f"{folder} is a text-to-video model ({index.get('_class_name')}); "
            "remove the input image or choose an image-to-video (I2V) model"
        )
    dtype = torch_dtype or torch.float32
    cls = WanImageToVideoPipeline if i2v else WanPipeline
    # Wan's VAE decodes badly in bf16: it stays float32.
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": {"default": dtype, "vae": torch.float32}}
    whole: dict[str, str] = {}
    try:
        for name in (n for n in TRANSFORMERS if (index.get(n) or [None])[0]):
            file = checkpoint if name == "transformer" and checkpoint is not None else \
                _folder_checkpoint(folder / name)
            try:
                kwargs[name] = _file_backed(folder, name, file, dtype)
            except (ValueError, VramError) as e:  # the file's dtypes or names: whole, as before
                whole[name] = str(e)
                if checkpoint is not None and name == "transformer":
                    kwargs[name] = WanTransformer3DModel.from_single_file(
                        str(checkpoint), config=str(folder), subfolder=name, torch_dtype=dtype,
                        local_files_only=True)
        pipe = cls.from_pretrained(str(folder), **kwargs)
    except ModelError:
        raise
    except Exception as e:  # corrupt files, wrong layout, missing parts
        what = checkpoint or folder
        raise ModelError(f"cannot load model from {what}: {type(e).__name__}: {e}") from e
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe=pipe, spec=spec, path=folder, is_tiny=spec.is_tiny, i2v=i2v,
                       whole_reasons=whole)


def _folder_checkpoint(sub: Path) -> Path | None:
    """A diffusers component folder's safetensors (one file or an index)."""
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"):
        if (sub / name).is_file():
            return sub / name
    return None


def _file_backed(folder: Path, name: str, file: Path | None, dtype: Any) -> Any:
    """The transformer built from the folder's config, its rest read from
    `file`, its blocks left in it (genesis.loading.file_source). ValueError
    when the file cannot back it (see genesis.loading)."""
    import torch
    from diffusers import WanTransformer3DModel

    from genesis.loading import open_file_backed

    if file is None:
        raise ValueError(f"{folder / name} has no safetensors file")
    config = WanTransformer3DModel.load_config(str(folder), subfolder=name, local_files_only=True)
    model, _ = open_file_backed(lambda: WanTransformer3DModel.from_config(config), file,
                                torch.device("cpu"), dtype=dtype)
    return model.eval()  # as from_pretrained gives it


def transformer_size(model: Any) -> tuple[float, int]:
    """(size in MiB at the loaded dtype, number of transformer blocks)."""
    from genesis.modelinfo import model_size_mb

    blocks = getattr(model, "blocks", None)
    num = len(blocks) if blocks is not None else int(getattr(model.config, "num_layers", 0))
    return model_size_mb(model), num

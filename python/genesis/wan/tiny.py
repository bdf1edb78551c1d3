"""A tiny Wan model with random weights, built locally (no download).

It has the real architecture (WanTransformer3DModel, AutoencoderKLWan,
UMT5EncoderModel, a tokenizer, and for image-to-video a CLIP vision encoder)
at toy sizes, so the whole app runs on a CPU in seconds. Its output is noise.
"tiny-a14b" is shaped like Wan2.2 A14B: two transformer experts (the
second, transformer_2, runs the low-noise half of the steps).
It is saved once in diffusers layout and loaded back through the same
from_pretrained path as a real model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TINY_T2V = "tiny"
TINY_I2V = "tiny-i2v"
TINY_A14B = "tiny-a14b"
TINY_NAMES = (TINY_T2V, TINY_I2V, TINY_A14B)

# Bumped when the recipe changes, so old caches are rebuilt.
_RECIPE = "v2"  # tiny and tiny-i2v; tiny-a14b is tiny plus a second expert
_TEXT_DIM = 32
_IMAGE_DIM = 4
_NUM_BLOCKS = 4
_MAX_TEXT_TOKENS = 512


def cache_root() -> Path:
    """$GENESIS_CACHE_DIR, else $XDG_CACHE_HOME/genesis, else ~/.cache/genesis."""
    env = os.environ.get("GENESIS_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "genesis"


def _build_tokenizer():
    """Byte-level BPE with no merges: every UTF-8 byte is a token, so any
    prompt (Chinese included) tokenizes without a trained vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=_MAX_TEXT_TOKENS,
    )


def _build_pipeline(i2v: bool, experts: int = 1):
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tokenizer = _build_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=_TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformers = [WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36 if i2v else 16,
        out_channels=16,
        text_dim=_TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=_NUM_BLOCKS,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,  # real Wan's: 32 failed past 512 pixels or 125 frames
        image_dim=_IMAGE_DIM if i2v else None,
    ) for _ in range(experts)]
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    common = dict(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformers[0],
        scheduler=scheduler,
    )
    if experts == 2:  # Wan2.2 A14B: the second expert takes the low-noise half
        return WanPipeline(**common, transformer_2=transformers[1], boundary_ratio=0.5)
    if not i2v:
        return WanPipeline(**common)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=_IMAGE_DIM,
            projection_dim=_IMAGE_DIM,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    image_processor = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(
        image_encoder=image_encoder, image_processor=image_processor, **common
    )


def tiny_model_path(name: str = TINY_T2V) -> Path:
    """Folder of the tiny model `name` ("tiny", "tiny-i2v" or "tiny-a14b"), built and
    saved on first use (atomically, so parallel first uses are safe)."""
    if name not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}; expected one of {TINY_NAMES}")
    target = cache_root() / f"{name}-wan-{_RECIPE}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _build_pipeline(i2v=(name == TINY_I2V), experts=2 if name == TINY_A14B else 1
                        ).save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

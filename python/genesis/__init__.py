"""genesis: the Python side of libvram (intelligent VRAM management for Wan
video models).

- genesis.vram: the ctypes binding of libvram.
- genesis.blockswap: block swapping for any torch module made of blocks
  (apply_block_swap(model, mode="intelligent" | "legacy", ...)).
- genesis.legacy_blockswap: kijai's WanVideoBlockSwap behaviour (the baseline).
- genesis.phases: text encoder, transformer and VAE taking turns on the GPU.
- genesis.apps.intelligent_vram_manager: the seed's API.

Importing genesis imports neither torch nor libvram; the submodules do.
"""

__version__ = "0.1.0"

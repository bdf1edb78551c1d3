"""Wan video models for the genesis app: loading, the built-in tiny model,
schedulers, video files and the command-line generator."""

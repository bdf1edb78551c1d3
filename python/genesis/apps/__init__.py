"""User-facing genesis apps (the WanVideo Gradio app) and the VRAM manager they use."""

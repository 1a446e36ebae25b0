"""absl-flag scripts: flags -> config -> kerasllm library calls. Run as `python -m trainers.<name>`."""

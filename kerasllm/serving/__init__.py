"""Serving kerasllm exports with TF Serving: the server's model and batching config
files (`model_config`, `batching`) and a REST/gRPC client (`client`)."""

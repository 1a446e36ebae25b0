"""Serving kerasllm exports with TF Serving: the server's model and batching config
files (`model_config`, `batching`), a REST/gRPC client (`client`) and a development
server speaking TF Serving's APIs for laptops and tests (`dev_server`)."""

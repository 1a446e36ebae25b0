# The OpenAI-compatible gateway (kerasllm.serving.gateway) in front of TF Serving.
# Build from the repository root: docker build -f deploy/gateway.Dockerfile -t kerasllm-gateway .
# (deploy/docker-compose.yml builds it). It holds no model: every request goes to
# TF Serving's REST (or gRPC) API.
FROM python:3.11-slim
WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY kerasllm ./kerasllm
COPY trainers ./trainers
RUN pip install --no-cache-dir '.[gateway]' && rm -rf /src
WORKDIR /
USER nobody
EXPOSE 8000
# Listen on every address (the default, 127.0.0.1, is unreachable from outside the
# container); compose and Kubernetes give their own command with their flags.
CMD ["python", "-m", "kerasllm.serving.gateway", "--serving=http://tensorflow-serving:8501", \
     "--host=0.0.0.0", "--port=8000"]

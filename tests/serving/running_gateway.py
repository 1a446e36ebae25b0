"""A gateway app (kerasllm.serving.gateway.create_app) served by uvicorn on a free port
in a thread: the gateway tests and the lm-eval tests run it in front of the development
server."""
import threading
import time

import openai
import uvicorn

from kerasllm.serving.gateway import create_app
from tests.ports import free_ports


class RunningGateway:
    """A gateway app served by uvicorn on a free port, in a thread."""

    def __init__(self, gateway):
        self.gateway = gateway
        port = free_ports(1)[0]
        self.server = uvicorn.Server(uvicorn.Config(create_app(gateway), host="127.0.0.1",
                                                    port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1"

    def client(self, api_key="unused", **kwargs):
        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, **kwargs)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)

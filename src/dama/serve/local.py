"""The server on a background thread of this process, on a free loopback port: for tests, the benchmark
and notebooks, so they call the real HTTP server (uvicorn, the same app) rather than the app in-process."""

from __future__ import annotations

import threading
import time

from dama.serve.app import create_app
from dama.serve.engine import ServeEngine
from dama.serve.options import ServeOptions


class LocalServer:
    """``with LocalServer(options) as s: s.url`` -> ``http://127.0.0.1:PORT``; leaving the block shuts the
    server down gracefully (in-flight requests finish). ``engine`` may be given to reuse loaded models."""

    def __init__(self, options: ServeOptions, engine: ServeEngine | None = None):
        import uvicorn

        self.options = options
        self.engine = engine or ServeEngine(options)
        self.app = create_app(self.engine, options)
        config = uvicorn.Config(self.app, host=options.host, port=options.port, log_level="warning",
                                timeout_graceful_shutdown=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dama-serve-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("dama serve did not start (is the port free?)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)

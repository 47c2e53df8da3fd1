"""The settings of one ``dama serve``: one dataclass, shared by the CLI, the tests and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServeOptions:
    """What to serve and how. ``adapters`` maps a key (the model id clients send, e.g. ``sw``) to a run folder."""

    adapters: dict[str, str | Path] = field(default_factory=dict)
    model: str | None = None  # base model; default: the one the adapters were trained on
    lid: str | Path | None = None  # router folder (dama lid train); default: lid/ beside the adapters if found
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 25.0  # OpenAI's own limit
    max_queue: int = 64  # requests waiting or in progress; one more gets 503
    batch_size: int = 8  # requests decoded together (per adapter); 1 = batching off
    batch_window_ms: float = 20.0  # how long the worker waits for more requests to fill a batch
    device: str | None = None
    threads: int = 0  # torch CPU threads (0: torch's default)
    beams: int = 1

    @property
    def batching(self) -> bool:
        return self.batch_size > 1

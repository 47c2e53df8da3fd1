"""The bounded request queue and the one worker thread that batches requests per adapter.

Why one worker thread: PEFT switches adapters by mutating the model (``set_adapter``), and torch
already uses every core inside one forward pass, so model calls are serialised; what concurrency buys
is batching. The worker takes the oldest waiting request, waits up to ``window`` (from that request's
arrival) for others bound for the same adapter, and decodes up to ``batch_size`` of them together.
Requests without a language first go through a detection batch (the router), then wait again in their
adapter's line, keeping their place (arrival time). ``batch_size=1`` turns batching off. Long-form
requests (audio over 30 s, or a format with segment times) are served one at a time: their VAD windows
are batched inside the long-form decoder instead.

Bounded: at most ``max_queue`` requests waiting or in progress; one more raises :class:`QueueFull` (the
API answers 503 and the client may retry). :meth:`BatchQueue.stop` refuses new requests and, by default,
finishes every accepted one before the worker exits (graceful shutdown).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from dama.data.audio import SAMPLE_RATE
from dama.serve.engine import Plan, ServeEngine
from dama.serve.formats import Transcript
from dama.serve.transcription import needs_long_form

log = logging.getLogger("dama.serve")


class QueueFull(Exception):
    """No room for another request (or the server is shutting down)."""


@dataclass(eq=False)  # identity: two jobs are never "equal" (and numpy arrays do not compare to a bool)
class Job:
    audio: np.ndarray
    plan: Plan
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    detected: bool = False

    @property
    def long_form(self) -> bool:
        return needs_long_form(self.audio, self.plan.timed)

    @property
    def batch_key(self) -> tuple:
        """Jobs batched together: detection, or one adapter's short clips, or one adapter's long-form line."""
        return ("detect",) if self.plan.needs_detection else ("adapter", self.plan.adapter, self.long_form)


@dataclass
class QueueStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    rejected: int = 0


class BatchQueue:
    def __init__(self, engine: ServeEngine, batch_size: int = 8, window_s: float = 0.02, max_queue: int = 64):
        self.engine, self.batch_size, self.window_s, self.max_queue = engine, max(1, batch_size), window_s, max_queue
        self._jobs: list[Job] = []
        self._active = 0  # accepted and not yet answered (waiting + in progress)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = QueueStats()

    @property
    def active(self) -> int:
        return self._active

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dama-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, audio: np.ndarray, plan: Plan) -> Future:
        """Queue a request; its future gets a :class:`Transcript` (or the model's exception)."""
        with self._cond:
            if self._stopping:
                self.stats.rejected += 1
                raise QueueFull("the server is shutting down")
            if self._active >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(f"the server is busy ({self._active} requests in progress, "
                                f"--max-queue {self.max_queue})")
            job = Job(audio, plan)
            self._jobs.append(job)
            self._active += 1
            self._cond.notify()
        return job.future

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Refuse new requests; finish (``drain``) or fail the accepted ones; wait for the worker."""
        with self._cond:
            self._stopping = True
            if not drain:
                for job in self._jobs:
                    job.future.set_exception(QueueFull("the server shut down before this request was served"))
                self._active -= len(self._jobs)
                self._jobs.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker ----------------------------------------------------------------------------------------

    def _take_batch(self) -> list[Job] | None:
        """Block until a batch is ready (or return None when stopping with nothing left)."""
        with self._cond:
            while True:
                if not self._jobs:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                oldest = min(self._jobs, key=lambda j: j.arrived)
                key = oldest.batch_key
                same = [j for j in sorted(self._jobs, key=lambda j: j.arrived) if j.batch_key == key]
                wait = oldest.arrived + self.window_s - time.monotonic()
                single = self.batch_size == 1 or (key[0] == "adapter" and key[2])  # long-form: one at a time
                if len(same) >= self.batch_size or wait <= 0 or self._stopping or single:
                    batch = same[: 1 if single else self.batch_size]
                    taken = set(map(id, batch))
                    self._jobs = [j for j in self._jobs if id(j) not in taken]
                    return batch
                self._cond.wait(wait)

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                self._serve(batch)
            except Exception as e:  # a model failure fails this batch, not the server
                log.exception("batch of %d failed", len(batch))
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(e)
                self._finish(batch)

    def _serve(self, batch: list[Job]) -> None:
        audios = [j.audio for j in batch]
        if batch[0].plan.needs_detection:
            resolved = self.engine.route(audios, [j.plan for j in batch])
            with self._cond:  # back in line with their arrival time, now bound for their adapter
                for j, plan in zip(batch, resolved):
                    j.plan, j.detected = plan, True
                    self._jobs.append(j)
                self._cond.notify()
            return
        plan = batch[0].plan
        segments = self.engine.transcribe(plan.adapter, audios, [j.plan.language for j in batch],
                                          long_form=batch[0].long_form)
        with self._cond:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for j, segs in zip(batch, segments):
            lang = j.plan.language
            j.future.set_result(Transcript(
                segs, lang, len(j.audio) / SAMPLE_RATE, j.plan.adapter, j.detected,
                getattr(j.plan, "probability", None), self.engine.language_names.get(lang),
                getattr(j.plan, "by", None)))
        self._finish(batch)

    def _finish(self, batch: list[Job]) -> None:
        with self._cond:
            self._active -= len(batch)
            self._cond.notify_all()

"""The HTTP API: OpenAI's ``/v1/audio/transcriptions`` and ``/v1/models``, ``/health``, the web page at ``/``.

FastAPI on uvicorn: FastAPI (Starlette underneath) gives multipart uploads spooled to disk
(python-multipart), exception handlers to answer every failure in OpenAI's error shape, and an
OpenAPI page at ``/docs`` for free; uvicorn is the ASGI server the OpenAI-compatible Whisper servers
(speaches, faster-whisper-server) run on and finishes in-flight requests on SIGTERM/SIGINT before
the app's lifespan ends, which is where the batch worker drains.

The form is parsed by hand (``await request.form()``) rather than through FastAPI's declared
``File``/``Form`` parameters, so a missing or malformed field gets OpenAI's error shape naming the
field instead of FastAPI's 422 validation list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from dama.errors import DataError
from dama.serve.batching import BatchQueue, QueueFull
from dama.serve.engine import RequestError, ServeEngine
from dama.serve.formats import FORMATS, MEDIA_TYPES, render
from dama.serve.options import ServeOptions
from dama.serve.transcription import TIMED_FORMATS

log = logging.getLogger("dama.serve")
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around the file, allowed over --max-upload-mb


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    type_ = "invalid_request_error" if status < 500 else ("server_busy" if status == 503 else "server_error")
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _field(form, name: str) -> str | None:
    v = form.get(name)
    if v is None or isinstance(v, UploadFile):
        return None
    return str(v)


def create_app(engine: ServeEngine, options: ServeOptions) -> FastAPI:
    """The app serving ``engine``; the batch worker starts and drains with the app's lifespan."""
    queue = BatchQueue(engine, options.batch_size, options.batch_window_ms / 1000, options.max_queue)
    max_bytes = int(options.max_upload_mb * 1024 * 1024)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        yield
        await run_in_threadpool(queue.stop)  # uvicorn stopped taking requests; finish the accepted ones

    app = FastAPI(title="dama serve", description="Whisper with DAMA adapters, OpenAI audio API", lifespan=lifespan)
    app.state.queue, app.state.engine = queue, engine

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError):
        return error_response(e.status, str(e), e.param, e.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(e).__name__}: {e}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.base_name, "adapters": engine.adapter_languages,
                "router": str(engine.router_path) if engine.router_path else None,
                "queue": {"active": queue.active, "max": options.max_queue, "batch_size": queue.batch_size},
                "served": {"requests": queue.stats.requests, "batches": queue.stats.batches,
                           "largest_batch": queue.stats.largest_batch, "rejected": queue.stats.rejected}}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": engine.models()}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str):
        for m in engine.models():
            if m["id"] == model_id:
                return m
        raise RequestError(f"unknown model {model_id!r}", status=404, param="model", code="model_not_found")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return (resources.files("dama.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + MULTIPART_OVERHEAD:
            raise RequestError(f"the upload is {int(length) / 2**20:.1f} MB; this server takes at most "
                               f"{options.max_upload_mb:g} MB (--max-upload-mb)", status=413, param="file",
                               code="file_too_large")
        try:
            form = await request.form(max_files=1, max_fields=32)
        except Exception as e:  # not multipart, or a malformed body
            raise RequestError(f"send the request as multipart/form-data with a 'file' field ({e})",
                               param="file") from e
        fmt = (_field(form, "response_format") or "json").strip()
        if fmt not in FORMATS:
            raise RequestError(f"response_format {fmt!r} is not supported; use one of {', '.join(FORMATS)}",
                               param="response_format", code="unsupported_response_format")
        grans = [str(g) for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")]
        if any(g != "segment" for g in grans):
            raise RequestError(f"timestamp_granularities {grans}: only 'segment' is supported (no word timestamps)",
                               param="timestamp_granularities[]", code="unsupported_granularity")
        plan = engine.plan(_field(form, "model"), _field(form, "language"), timed=fmt in TIMED_FORMATS)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError("no audio: send it in the multipart field 'file'", param="file", code="missing_file")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise RequestError(f"{upload.filename}: larger than {options.max_upload_mb:g} MB (--max-upload-mb)",
                               status=413, param="file", code="file_too_large")
        try:
            from dama.data.audio import decode_audio_bytes

            audio = await run_in_threadpool(decode_audio_bytes, data, upload.filename or "file")
        except DataError as e:
            raise RequestError(str(e), param="file", code="invalid_audio") from e
        headers = {}
        if _field(form, "prompt"):
            headers["X-Dama-Note"] = "prompt ignored: dama decodes without a text prompt"
        if _field(form, "temperature") not in (None, "0", "0.0"):
            headers["X-Dama-Note"] = "temperature ignored: dama decodes greedily (or with --beams)"
        try:
            future = queue.submit(audio, plan)
        except QueueFull as e:
            return error_response(503, f"{e}; retry shortly", code="server_busy")
        transcript = await asyncio.wrap_future(future)
        body = render(transcript, fmt)
        if isinstance(body, dict):
            return JSONResponse(body, headers=headers)
        return PlainTextResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    return app


def serve(options: ServeOptions, ready=None) -> None:
    """Load the models and run uvicorn until SIGINT/SIGTERM (in-flight requests are finished first)."""
    import uvicorn

    engine = ServeEngine(options)
    app = create_app(engine, options)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="info", timeout_graceful_shutdown=None)
    server = uvicorn.Server(config)
    if ready is not None:
        ready(server)
    server.run()



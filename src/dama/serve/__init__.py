"""``dama serve``: one base Whisper, many languages' adapters, over HTTP (the OpenAI audio API).

One concern per module: ``options`` (the entry point's settings), ``transcription`` (audio to
timed segments: the one call to swap for long-form decoding), ``formats`` (json/text/srt/vtt/
verbose_json), ``lid`` (the language router: a linear classifier on the frozen encoder, saved as
safetensors + JSON), ``engine`` (models, routing, a request's route), ``batching`` (the bounded
queue and the worker that batches requests per adapter), ``app`` (the FastAPI routes, OpenAI's
error shape, the web page in ``static/``).
"""

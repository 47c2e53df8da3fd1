"""Old import path of the encoder cache, now :mod:`dama.encoder_cache` (it serves training,
evaluation, probes and benchmarks alike). Kept so existing imports keep working; new code
imports from :mod:`dama.encoder_cache`."""

from dama.encoder_cache import (
    FORMAT,
    EncoderCache,
    cache_info,
    check_cache,
    clip_key,
    clip_keys,
    encoder_fingerprint,
    prune_cache,
    repair_cache,
)

__all__ = ["FORMAT", "EncoderCache", "cache_info", "check_cache", "clip_key", "clip_keys", "encoder_fingerprint",
           "prune_cache", "repair_cache"]

"""Data: manifests, audio loading, corpus recipes and checks."""

from dama.data.audio import SAMPLE_RATE, load_audio
from dama.data.check import check_manifest
from dama.data.manifest import Manifest, Problem, Utterance, read_common_voice, read_jsonl, read_table, select_hours
from dama.data.spec import load_data

__all__ = [
    "SAMPLE_RATE",
    "Manifest",
    "Problem",
    "Utterance",
    "check_manifest",
    "load_audio",
    "load_data",
    "read_common_voice",
    "read_jsonl",
    "read_table",
    "select_hours",
]

"""Deployment: adapted models out of dama and into the runtimes users serve with."""

from dama.deploy.export import FORMATS, QUANTIZATIONS, export_run, load_faster_whisper, pad_to_window

__all__ = ["FORMATS", "QUANTIZATIONS", "export_run", "load_faster_whisper", "pad_to_window"]

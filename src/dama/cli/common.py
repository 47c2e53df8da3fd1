"""What several commands share: --json, the decoding flags, loading a model, flags from dataclass fields.

Nothing here imports torch at module level: ``dama --help`` builds every parser.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from dataclasses import MISSING, Field

DEFAULT_MODEL = "whisper-base"


def add_json_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--json", metavar="PATH", help=help)


def write_json(path: str | None, obj: dict) -> None:
    """The --json output: ``obj`` as indented UTF-8 JSON, written atomically (nothing when no --json)."""
    if path:
        from dama.outputs import atomic_write_text

        atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """The columns of a Hugging Face dataset given as data (default: found among the usual names)."""
    g = p.add_argument_group("Hugging Face datasets (hf:NAME[:CONFIG]:SPLIT, save_to_disk folders, .parquet)")
    g.add_argument("--text-column", metavar="COL",
                   help="transcript column (default: sentence, text, transcription, normalized_text or "
                        "raw_transcription, whichever comes first)")
    g.add_argument("--language-column", metavar="COL", help="language column (default: language, locale or lang)")
    g.add_argument("--audio-column", metavar="COL", help="audio column (default: the column of type Audio)")


def dataset_columns(args):
    from dama.data.hf import DatasetColumns

    return DatasetColumns(text=getattr(args, "text_column", None), language=getattr(args, "language_column", None),
                          audio=getattr(args, "audio_column", None))


def add_decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="known name (whisper-base), HF or CTranslate2 folder, or hub id (default: %(default)s)")
    p.add_argument("--language", help="language code to force (overrides the data's own)")
    p.add_argument("--beams", type=int, default=1, help="beam size; 1 = greedy (default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--loop-repeats", type=int, default=4,
                   help="stop a transcript when its tail n-gram repeats this often (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a `dama train` run directory to apply to the model")
    add_json_arg(p, "write results as JSON")


def add_longform_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--long-strategy", choices=("vad", "sequential"), default="vad",
                   help="long-form decoding: vad = Silero VAD windows decoded in batches (default), sequential = "
                        "transformers' 30 s windows moved by the last timestamp")
    p.add_argument("--timing", choices=("tokens", "vad", "words", "words-vad"), default="words-vad",
                   help="segment times of long-form transcripts: words-vad = word timings (cross-attention + DTW), "
                        "segments split at pauses of 1 s or more and their edges snapped to a fine VAD pass "
                        "(default); words = word timings only; vad = Whisper's timestamp tokens snapped to the "
                        "fine VAD; tokens = Whisper's timestamp tokens as decoded (docs/longform.md)")


def decode_opts(args):
    from dama.models.transcribe import DecodeOptions

    return DecodeOptions(language=args.language, num_beams=args.beams, batch_size=args.batch_size,
                         loop_repeats=args.loop_repeats)


def explicit_base(args) -> str | None:
    """--model only when the user gave one: an adapter otherwise brings its own base."""
    return None if args.model == DEFAULT_MODEL else args.model


def load_model(args):
    """--adapter RUN_DIR applied to its base (or --model), else --model."""
    if getattr(args, "adapter", None):
        from dama.runs import load_run

        return load_run(args.adapter, device=args.device, base=explicit_base(args))
    from dama.models.load import load_whisper

    return load_whisper(args.model, device=args.device)


def setup_torch(args) -> None:
    import torch

    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)


def _scalar_type(annotation):
    """``int | None`` -> int; ``tuple[int, ...]`` -> tuple (given as text, parsed by the library)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    return typing.get_origin(annotation) or annotation


def add_field_arguments(p: argparse.ArgumentParser, cls, fields: list[Field]) -> None:
    """One flag per dataclass field of ``cls``: the flag and help from the field's metadata (``flag``,
    ``help``, ``choices``), the type from its annotation (a bool is a switch; ``negate``: the switch turns
    the setting off; a tuple, or ``text``, is text the library parses), the dest its option name
    (``--warmup`` -> ``args.warmup``).

    The argparse default is None (a switch's too), so a flag not given is told apart from one given with
    the default's value, and the dataclass's default applies; ``--help`` shows that default.
    """
    from dama.adapt.options import flag_of, option_name

    hints = typing.get_type_hints(cls)
    for f in fields:
        kind = _scalar_type(hints[f.name])
        help = f.metadata.get("help", "")
        kw: dict = {"dest": option_name(f), "default": None}
        if kind is bool:
            kw["action"] = "store_true"
        else:
            kw["type"] = str if kind is tuple or f.metadata.get("text") else kind
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if f.default is not MISSING and f.default is not None:
                help += f" (default: {str(f.default).replace('%', '%%')})"
        p.add_argument(flag_of(f), help=help, **kw)


def given(args, names) -> dict:
    """The options among ``names`` as parsed (None: not given)."""
    return {n: getattr(args, n) for n in names}


def safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s).strip("_")

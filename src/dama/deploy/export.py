"""Merge a run's adapter into its base and save the result where users run Whisper.

- ``hf``: a standard transformers Whisper directory (weights, tokenizer with any new
  language token, feature extractor, generation config).
- ``ct2``: that directory converted by the converter the ``ctranslate2`` package ships,
  loadable by ``faster_whisper.WhisperModel(DIR)``; quantisation float32, float16 or int8.
- ``ggml``: ``ggml-model.bin`` for whisper.cpp (:mod:`dama.models.ggml`), float16 or one of whisper.cpp's
  block quantizations (q8_0, q5_0, q5_1, q4_0, q4_1).

Both write ``dama_export.json`` (source run, base model, languages) and a Hugging Face model card
(``README.md``, :mod:`dama.deploy.card`), and appear atomically:
everything is built in a temporary sibling folder and renamed into place at the end.

``dama_export.json`` is also how a folder is known to be an export: ``--force`` replaces only such a
folder (holding nothing but an export's files), never a run, a folder holding the run, or anything else.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from dama.errors import DamaError
from dama.runs import RunFolder
from dama.safeio import read_json

FORMATS = ("hf", "ct2", "ggml")
QUANTIZATIONS = ("float32", "float16", "int8")
# whisper.cpp's block types (what its `quantize` tool writes) and float16; a float32 file loads, but whisper.cpp
# 1.8.5's CPU convolution aborts on float32 conv weights (GGML_ASSERT(src0->type == GGML_TYPE_F16) in ggml-cpu/ops.cpp)
GGML_QUANTIZATIONS = ("float16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1")
META = "dama_export.json"
RUN_MARKS = RunFolder.MARKS  # what a folder holding a dama run has (any one is enough): never an export's target
# What an export holds: save_pretrained's files (hf) or CTranslate2's (ct2), and META.
EXPORT_FILES = frozenset({
    META, "README.md", "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "normalizer.json", "model.bin", "vocabulary.json", "vocabulary.txt", "ggml-model.bin",
})
EXPORT_WEIGHTS = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json")


def export_problem(path: Path) -> str | None:
    """Why ``path`` is not recognisably an earlier dama export (None: it is, and --force may replace it)."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return f"it has no readable {META}, which every dama export has"
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        return f"its {META} is not one dama wrote"
    other = sorted(n for n in (p.name for p in path.iterdir())
                   if n not in EXPORT_FILES and not EXPORT_WEIGHTS.fullmatch(n))
    if other:
        return f"it also holds files an export does not ({', '.join(other[:5])})"
    return None


def check_out(run_dir: Path, out: Path, force: bool) -> None:
    """Refuse an ``out`` that is the run, lies inside it, holds it, or is any dama run; replace an existing
    ``out`` only with ``force`` and only if it is an earlier export (see :func:`export_problem`)."""
    from dama.models.convert import check_replaceable

    run, dest = run_dir.resolve(), out.resolve()
    if dest == run or dest.is_relative_to(run) or run.is_relative_to(dest):
        where = "is" if dest == run else "is inside" if dest.is_relative_to(run) else "holds"
        raise DamaError(f"--out {out} {where} the run folder {run_dir}; exporting there would replace the run. "
                        "Choose an --out outside the run folder")
    if marks := RunFolder(dest).found_marks():
        raise DamaError(f"--out {out} is a dama run folder (it has {', '.join(marks)}); not replacing it, even "
                        "with --force. Choose another --out")
    check_replaceable(out, force, export_problem, "an earlier dama export", error=DamaError, empty_needs_force=True,
                      remedy="choose another --out, or move this one away yourself")


def _save_hf(w, out: Path) -> None:
    w.model.save_pretrained(out)
    w.tokenizer.save_pretrained(out)
    w.feature_extractor.save_pretrained(out)
    w.model.generation_config.save_pretrained(out)


def onto_slot(w, cfg: dict, slot: str, base: str | Path | None = None, label: str = "run"):
    """The merged model ``w`` of a run that added a new language token, with that token's trained row moved
    onto Whisper's existing ``<|slot|>`` and the vocabulary, tokenizer and generation config those of the
    untouched base: a model any Whisper runtime takes unmodified (``language=slot``). Returns (w, what moved)."""
    import torch

    from dama.languages import resolve_language
    from dama.models.load import Whisper, load_whisper

    slot = resolve_language(slot)
    nl = cfg.get("new_language")
    if not nl:
        raise DamaError(f"--language-slot {slot}: {label} added no language token (its language is Whisper's "
                        f"own{', on <|' + cfg['language_slot']['slot'] + '|>' if cfg.get('language_slot') else ''}); "
                        "there is nothing to move. Export without --language-slot")
    clean = load_whisper(base or cfg["model"], device="cpu")  # the base's own tokenizer and vocabulary
    slot_id = clean.language_token_id(slot)
    n_vocab = clean.model.get_input_embeddings().weight.shape[0]
    model = w.model
    with torch.no_grad():
        model.get_input_embeddings().weight[slot_id] = model.get_input_embeddings().weight[nl["token_id"]]
    model.resize_token_embeddings(n_vocab, mean_resizing=False)
    model.config.vocab_size = n_vocab
    model.generation_config = clean.model.generation_config
    moved = {"slot": slot, "token_id": slot_id, "code": nl["code"], "name": nl["name"], "from_token_id": nl["token_id"]}
    return Whisper(model, clean.tokenizer, clean.feature_extractor, w.name), moved


def _refuse_new_token_ggml(run_dir: Path, nl: dict) -> None:
    raise DamaError(f"--format ggml: {run_dir} added the language token <|{nl['code']}|>, and "
                    "whisper.cpp's language table is fixed; export with --language-slot CODE to serve "
                    f"{nl['name']} on an existing Whisper language token")


def export_run(run_dir: str | Path, fmt: str, out: str | Path, quantization: str | None = None,
               force: bool = False, base: str | Path | None = None, log=print,
               language_slot: str | None = None) -> Path:
    """Export the run in ``run_dir`` as ``fmt`` into ``out``; returns ``out``. ``out`` must not be, hold or lie
    in the run (nor be any dama run); an existing ``out`` is replaced only with ``force`` and only if it is
    an earlier export. ``language_slot``: put the run's new language token on that existing Whisper token
    (:func:`onto_slot`)."""
    from dama.models.convert import swap_in

    if fmt not in FORMATS:
        raise DamaError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    quantization = quantization or ("float16" if fmt == "ggml" else "float32")
    if fmt == "ct2" and quantization not in QUANTIZATIONS:
        raise DamaError(f"unknown quantization {quantization!r}; choose from {', '.join(QUANTIZATIONS)}")
    if fmt == "ggml" and quantization not in GGML_QUANTIZATIONS:
        why = {"float32": "whisper.cpp's CPU convolution aborts on float32 weights",
               "int8": "whisper.cpp's 8-bit type is q8_0"}.get(quantization, "whisper.cpp has no such type")
        raise DamaError(f"--format ggml cannot write --quantization {quantization!r} ({why}); choose from "
                        f"{', '.join(GGML_QUANTIZATIONS)}")
    run_dir, out = Path(run_dir), Path(out)
    check_out(run_dir, out, force)
    run = RunFolder(run_dir)
    cfg = run.read_config()
    if fmt == "ggml" and cfg.get("new_language") and not language_slot:  # refuse before loading and merging
        _refuse_new_token_ggml(run_dir, cfg["new_language"])
    w = run.load(device="cpu", merge=True, base=base)  # checks the base and restores new tokens
    nl = cfg.get("new_language")
    slot = cfg.get("language_slot")  # trained on an existing token already (dama train --language-slot)
    if language_slot:
        w, slot = onto_slot(w, cfg, language_slot, base, label=str(run_dir))
        nl = None
        log(f"<|{slot['code']}|> ({slot['name']}) moved onto <|{slot['slot']}|>: use language={slot['slot']!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        hf_dir = tmp / "hf"
        _save_hf(w, hf_dir)
        final = hf_dir
        if fmt == "ct2":
            try:
                from ctranslate2.converters import TransformersConverter
            except ImportError:
                raise DamaError("--format ct2 needs the ctranslate2 package: pip install 'dama[deploy]'") from None
            log(f"converting to CTranslate2 ({quantization}) with ctranslate2's TransformersConverter")
            final = Path(TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"])
                         .convert(str(tmp / "ct2"), quantization=quantization))
            if nl:  # let CTranslate2's language detection consider the new token too
                c = json.loads((final / "config.json").read_text())
                c["lang_ids"] = sorted(set(c.get("lang_ids", [])) | {nl["token_id"]})
                (final / "config.json").write_text(json.dumps(c, indent=2))
        if fmt == "ggml":
            from dama.models.ggml import FILE_NAME, write_ggml

            if nl:
                _refuse_new_token_ggml(run_dir, nl)
            final = tmp / "ggml"
            final.mkdir()
            log(f"writing whisper.cpp's ggml format ({quantization})")
            write_ggml(w, final / FILE_NAME, quantization=None if quantization == "float16" else quantization)
        meta = {"format": fmt, "quantization": quantization if fmt in ("ct2", "ggml") else "float32",
                "run": str(run_dir.resolve()), "base_model": cfg.get("model"),
                "base_fingerprint": cfg.get("base_fingerprint"), "method": cfg.get("method", {}).get("method"),
                "language": slot["slot"] if slot else cfg.get("language"), "new_language": nl,
                "language_slot": slot}
        (final / META).write_text(json.dumps(meta, indent=2))
        from dama.deploy.card import CARD, run_card

        (final / CARD).write_text(str(run_card(run, fmt, export=meta)))
        check_out(run_dir, out, force)  # again: the folder may have changed while the model was built
        swap_in(final, out)  # a failure leaves the earlier export as it was
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"exported {run_dir} as {fmt} to {out}")
    return out


def load_faster_whisper(model_dir: str | Path, **kwargs):
    """``faster_whisper.WhisperModel(model_dir, **kwargs)``, after teaching faster-whisper the
    language codes the export added (it checks codes against a fixed list of Whisper's own)."""
    try:
        import faster_whisper.tokenizer as fw_tok
        import faster_whisper.transcribe as fw_tr
    except ImportError:
        raise DamaError("serving an export needs faster-whisper: pip install 'dama[deploy]'") from None

    meta_path = Path(model_dir) / META
    nl = read_json(meta_path, "export metadata").get("new_language") if meta_path.is_file() else None
    if nl and nl["code"] not in fw_tok._LANGUAGE_CODES:
        fw_tok._LANGUAGE_CODES = (*fw_tok._LANGUAGE_CODES, nl["code"])
        fw_tr._LANGUAGE_CODES = fw_tok._LANGUAGE_CODES
    return fw_tr.WhisperModel(str(model_dir), **kwargs)


WINDOW_SAMPLES = 30 * 16000  # Whisper's window: 30 s at 16 kHz


def pad_to_window(audio):
    """``audio`` (16 kHz float32) padded with silence to Whisper's 30 s window; a longer clip is returned as is.

    Give faster-whisper a short clip this way to reproduce what the model saw in training. transformers (dama's
    training and evaluation) and whisper.cpp pad the audio and compute the log-mel of the silence; faster-whisper
    (like OpenAI's ``transcribe``) pads the log-mel with zeros, a different encoder input that changes the greedy
    text of an adapted model on about half of short clips. The padded clip's features match transformers' to within
    1e-4 (numbers: docs/ecosystem.md, benchmarks/ggml_vs_ct2.py)."""
    import numpy as np

    audio = np.asarray(audio, dtype=np.float32)
    return np.pad(audio, (0, WINDOW_SAMPLES - len(audio))) if len(audio) < WINDOW_SAMPLES else audio

"""Hugging Face model cards for runs and exports: a README.md whose YAML header the Hub reads.

Built with ``huggingface_hub``'s own ``ModelCardData``/``EvalResult`` (so ``model-index`` has the
shape the Hub and Papers-with-Code parse), from what the run recorded: the base model, the language,
the method and its per-layer ranks, the hours of speech it trained on, the measured test WER/CER
(in percent, the Open ASR Leaderboard's unit), the data specs and the command that made it.

Written by ``dama train`` into the adapter folder (``RUN/adapter/README.md``, or ``RUN/model/`` for
full fine-tuning, replacing PEFT's placeholder card) and by ``dama export`` into every export, so a
folder pushed to the Hub as it is (``dama push``) describes itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dama.errors import DamaError

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from dama.runs import RunFolder

CARD = "README.md"
LIBRARY = {"adapter": "peft", "model": "transformers", "hf": "transformers", "ct2": "ctranslate2"}
HF_PREFIX = "hf:"


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise DamaError("model cards need huggingface_hub (installed with transformers)") from None
    return huggingface_hub


def base_model_id(model: str | None) -> str | None:
    """The Hub id of a run's base model: a name dama fetches (``whisper-base`` -> ``openai/whisper-base``)
    or a Hub id as given; None for a local folder (the Hub would reject a path as ``base_model``)."""
    if not model:
        return None
    from dama.models.fetch import KNOWN_MODELS

    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model].hub_id
    if Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        return None
    return model


def _dataset_of(spec: str | None) -> tuple[str, str | None, str | None] | None:
    """(dataset, config, split) of the data spec a run was tested on."""
    if not spec:
        return None
    first = spec.split(",")[0]
    if first.startswith(HF_PREFIX):
        from dama.data.hf import parse_hub_spec

        try:
            return parse_hub_spec(first)
        except DamaError:
            return None
    name, _, split = first.partition(":")
    return Path(name).name or name, None, split or None


def _hub_datasets(specs: dict) -> list[str]:
    out = []
    for key in ("train", "val", "test"):
        for part in str(specs.get(key) or "").split(","):
            if part.startswith(HF_PREFIX) and (d := _dataset_of(part)) and d[0] not in out:
                out.append(d[0])
    return out


def run_card(run: RunFolder, kind: str = "adapter", command: str | None = None,
             export: dict | None = None) -> ModelCard:
    """The card of ``run``'s ``kind`` of folder: ``adapter``/``model`` (the run's own) or an export format
    (``hf``, ``ct2``, ``ggml``; ``export`` is its dama_export.json). ``command``: the ``dama train`` line
    (else the one recorded in the run's adapter card, if any)."""
    hub = _hub()
    cfg = run.read_config()
    res = run.read_results() if run.is_finished() else {}
    method = (cfg.get("method") or {}).get("method", "?")
    specs = cfg.get("data") or {}
    nl = cfg.get("new_language")
    languages = [c for c in (cfg.get("languages") or [cfg.get("language")]) if c]
    command = command or recorded_command(run)
    name = run.path.name
    base = base_model_id(cfg.get("model"))
    tags = ["automatic-speech-recognition", "whisper", "dama", method]
    if kind == "adapter":
        tags += ["peft", "lora"]
    elif kind in ("ct2", "ggml"):
        tags += ["faster-whisper"] if kind == "ct2" else ["ggml", "whisper.cpp"]
    evals = []
    ds = _dataset_of(specs.get("test"))
    if "wer" in res and ds:
        for metric, label in (("wer", "WER"), ("cer", "CER")):
            evals.append(hub.EvalResult(
                task_type="automatic-speech-recognition", task_name="Speech recognition",
                dataset_type=ds[0], dataset_name=specs.get("test"), dataset_config=ds[1], dataset_split=ds[2],
                metric_type=metric, metric_value=round(100 * float(res[metric]), 2), metric_name=f"Test {label} (%)"))
    dama = {"method": method, "ranks": res.get("ranks"), "train_hours": _round(res.get("train_hours")),
            "train_data": specs.get("train"), "hours_flag": specs.get("hours"), "test_data": specs.get("test"),
            "test_utterances": res.get("n"), "command": command,
            "new_language_token": f"<|{nl['code']}|>" if nl else None}
    slot = (export or {}).get("language_slot") or cfg.get("language_slot")
    if slot:
        dama["language_slot"] = {k: slot.get(k) for k in ("slot", "code", "name") if slot.get(k)}
        if slot.get("code"):  # the language it transcribes, not the token it borrows
            languages = [slot["code"]]
    if export:
        dama["export"] = {k: export.get(k) for k in ("format", "quantization") if export.get(k)}
    data = hub.ModelCardData(
        base_model=base, library_name=LIBRARY.get(kind), language=languages or None,
        pipeline_tag="automatic-speech-recognition", tags=tags, datasets=_hub_datasets(specs) or None,
        model_name=name, eval_results=evals or None, dama={k: v for k, v in dama.items() if v is not None},
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{_body(name, kind, cfg, res, dama, base, export)}"
    return hub.ModelCard(text)


def _round(x):
    return round(float(x), 4) if isinstance(x, int | float) else None


def _body(name: str, kind: str, cfg: dict, res: dict, dama: dict, base: str | None, export: dict | None) -> str:
    base_txt = base or cfg.get("model")
    nl = cfg.get("new_language")
    lang = ", ".join(c for c in (cfg.get("languages") or []) if c) or "the training data's language"
    what = {"adapter": f"A PEFT adapter for [{base_txt}](https://huggingface.co/{base_txt})" if base else
            f"A PEFT adapter for {base_txt}", "model": f"{base_txt} fully fine-tuned",
            "hf": f"{base_txt} with a dama adapter merged in (transformers)",
            "ct2": f"{base_txt} with a dama adapter merged in, converted to CTranslate2 (faster-whisper)",
            "ggml": f"{base_txt} with a dama adapter merged in, converted to whisper.cpp's ggml format"}[kind]
    lines = [f"# {name}", "", f"{what}, adapted to speech recognition in {lang} with "
             f"dama (method `{dama['method']}`).", ""]
    if "wer" in res:
        lines += ["## Results", "", "| test data | utterances | WER | CER |", "|---|---|---|---|",
                  f"| `{dama.get('test_data')}` | {res.get('n')} | {100 * res['wer']:.2f} % "
                  f"| {100 * res['cer']:.2f} % |", ""]
        if res.get("zero_shot"):
            zs = res["zero_shot"]
            lines += [f"The untouched base model scored WER {100 * zs['wer']:.2f} %, CER {100 * zs['cer']:.2f} % "
                      "on the same clips.", ""]
    lines += ["## Training", "", f"- method: `{dama['method']}`"]
    if dama.get("ranks"):
        lines.append(f"- LoRA ranks per decoder layer: {dama['ranks']}")
    if dama.get("train_hours") is not None:
        lines.append(f"- training speech: {dama['train_hours']:.3f} h from `{dama.get('train_data')}`")
    tr = cfg.get("train") or {}
    lines.append(f"- epochs {tr.get('epochs')}, batch {tr.get('batch_size')}, learning rate {tr.get('lr')}, "
                 f"seed {tr.get('seed')}")
    if nl:
        lines.append(f"- new language token `<|{nl['code']}|>` ({nl['name']}), id {nl['token_id']}")
    if dama.get("command"):
        lines += ["", "Trained with:", "", "```bash", dama["command"], "```"]
    lines += ["", "## Use", ""]
    code = nl["code"] if nl else (cfg.get("language") or (cfg.get("languages") or ["sw"])[0])
    if dama.get("language_slot") and (kind != "adapter" or not nl):
        code = dama["language_slot"]["slot"]
    if kind == "adapter":
        lines += ["```python", "from peft import PeftModel",
                  "from transformers import WhisperForConditionalGeneration", "",
                  f'base = WhisperForConditionalGeneration.from_pretrained("{base_txt}")',
                  'model = PeftModel.from_pretrained(base, "REPO_OR_FOLDER").merge_and_unload()', "```", "",
                  f"or `dama transcribe --adapter RUN_DIR --language {code} clip.wav`."]
        if nl:
            lines += ["", f"The adapter trains a new token `<|{nl['code']}|>`: load it with dama "
                      "(`--adapter`), which adds the token to the tokenizer first, or use a `dama export`."]
    elif kind in ("hf", "model"):
        lines += ["```python", "from transformers import pipeline", "",
                  'asr = pipeline("automatic-speech-recognition", model="REPO_OR_FOLDER")',
                  f'asr("clip.wav", generate_kwargs={{"language": "{code}"}})', "```"]
    elif kind == "ct2":
        lines += ["```python", "from faster_whisper import WhisperModel", "",
                  'model = WhisperModel("REPO_OR_FOLDER")',
                  f'segments, info = model.transcribe("clip.wav", language="{code}")', "```", "",
                  "faster-whisper pads a clip shorter than 30 s differently from the transformers feature extractor "
                  "the model was trained with; pass such a clip padded with silence to 30 s "
                  "(`dama.deploy.pad_to_window(audio)`) to get the text dama measured."]
    else:
        lines += ["```bash", f"whisper-cli -m ggml-model.bin -l {code} -nfa -f clip.wav", "```", "",
                  "`-nfa` (no flash attention) gives the text transformers and faster-whisper give: whisper.cpp's "
                  "flash attention keeps keys and values in float16, which changes some of an adapted model's words."]
    if dama.get("language_slot"):
        sl = dama["language_slot"]
        lines += ["", f"{sl.get('name') or sl.get('code') or 'The language'} is served on Whisper's existing "
                  f"`<|{sl['slot']}|>` token: pass `language=\"{sl['slot']}\"` to any Whisper runtime (the model no "
                  f"longer transcribes {sl['slot']} as Whisper did)."]
    return "\n".join(lines) + "\n"


def recorded_command(run: RunFolder) -> str | None:
    """The ``dama train`` command in the run's own card (adapter/ or model/ README.md), if one was written."""
    for folder in (run.adapter_path, run.model_path):
        card = folder / CARD
        if card.is_file():
            try:
                meta = _hub().ModelCard.load(card, ignore_metadata_errors=True).data.to_dict()
            except Exception:  # a hand-edited or foreign README: no command to report
                continue
            cmd = (meta.get("dama") or {}).get("command")
            if cmd:
                return str(cmd)
    return None


def write_run_card(run: RunFolder, command: str | None = None) -> Path | None:
    """Write the card of a finished run into its adapter/ (or model/) folder; None if it has neither."""
    from dama.outputs import atomic_write_text

    for kind, folder in (("adapter", run.adapter_path), ("model", run.model_path)):
        if folder.is_dir():
            card = run_card(run, kind, command=command)
            return atomic_write_text(folder / CARD, str(card))
    return None


__all__ = ["CARD", "base_model_id", "recorded_command", "run_card", "write_run_card"]

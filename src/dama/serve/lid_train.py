"""``dama lid train``: fit the language router on the adapters' own training clips and on other languages' clips.

Each adapter's run folder says what it was trained on (``config.json``: ``data.train``, ``language``), so
the router learns each adapter's language from exactly the audio that adapter knows; ``--other`` brings
clips of languages no adapter serves (class ``base``: the bare model with Whisper's detected language).
At most ``max_per_class`` clips per class (evenly spread over the data; for ``base``, shared out equally
among its languages, so a big corpus does not crowd out the others), so fitting takes a minute or two on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dama.errors import DamaError
from dama.runs import RunFolder
from dama.serve.lid import BASE, LanguageRouter, clip_features, default_layers


@dataclass
class LidTrainOptions:
    adapters: dict[str, str | Path] = field(default_factory=dict)
    other: str | None = None  # data spec of languages no adapter serves (class "base")
    out: str | Path | None = None  # default: lid/ beside the run folders, where dama serve finds it
    model: str | None = None
    data_root: str | None = None
    max_per_class: int = 60
    c: float | None = None  # None: chosen by cross-validation
    layers: tuple[int, ...] | None = None  # encoder layers pooled (hidden_states indices); None: middle + last
    device: str | None = None


def _spread(items: list, n: int) -> list:
    """At most ``n`` items evenly spread over ``items`` (deterministic: no seed to forget)."""
    if len(items) <= n:
        return items
    return [items[int(i * len(items) / n)] for i in range(n)]


def default_out(adapters: dict[str, str | Path]) -> Path:
    parents = {Path(p).resolve().parent for p in adapters.values()}
    if len(parents) != 1:
        raise DamaError("the run folders are in different folders: give --out for the router")
    return parents.pop() / "lid"


def train_router(opts: LidTrainOptions, log=print) -> tuple[LanguageRouter, Path, dict]:
    from dama.data import load_audio, load_data
    from dama.deploy.serve import MultiAdapterWhisper
    from dama.models.load import model_fingerprint

    if not opts.adapters:
        raise DamaError("dama lid train needs --adapters KEY=RUN_DIR[,...]")
    out = Path(opts.out) if opts.out else default_out(opts.adapters)
    multi = MultiAdapterWhisper(opts.adapters, base=opts.model, device=opts.device)
    sources: dict[str, list] = {}
    for key, run in opts.adapters.items():
        cfg = RunFolder(run).read_config()
        spec = (cfg.get("data") or {}).get("train")
        if not spec:
            raise DamaError(f"{run}: its config.json names no training data; cannot learn adapter {key}'s language")
        if not multi.languages.get(key):
            raise DamaError(f"adapter {key} ({run}) was trained on several or no languages; the router needs one")
        sources[key] = _spread(list(load_data(spec, opts.data_root)), opts.max_per_class)
    if opts.other:
        served = set(multi.languages.values())
        utts = [u for u in load_data(opts.other, opts.data_root) if u.language not in served]
        by_lang: dict[str | None, list] = {}
        for u in utts:
            by_lang.setdefault(u.language, []).append(u)
        each = max(1, -(-opts.max_per_class // max(1, len(by_lang))))  # every other language gets its share
        sources[BASE] = [u for group in by_lang.values() for u in _spread(group, each)]
    layers = tuple(opts.layers) if opts.layers else default_layers(multi.whisper)
    feats, labels = [], []
    for cls, utts in sources.items():
        log(f"lid: {cls}: {len(utts)} clips")
        with multi.using(None):
            cf = clip_features(multi.whisper, [load_audio(u.audio, u.where) for u in utts], layers=layers)
        feats.append(cf.features)
        labels += [cls] * len(utts)
    x = np.concatenate(feats)
    info = {"trained_on": {k: len(v) for k, v in sources.items()}, "other": opts.other, "model": multi.whisper.name}
    router = LanguageRouter.fit(x, labels, {k: v for k, v in multi.languages.items() if v}, c=opts.c,
                                fingerprint=model_fingerprint(multi.whisper.model.get_encoder()), info=info,
                                layers=layers)
    train_acc = float(np.mean(np.array(router.classes)[router.probabilities(x).argmax(1)] == np.array(labels)))
    router.info["train_accuracy"] = round(train_acc, 4)
    router.save(out)
    log(f"lid: router with classes {router.classes} (train accuracy {train_acc:.3f}) saved in {out}")
    return router, out, {"out": str(out), "classes": router.classes, "train_accuracy": train_acc,
                         "layers": list(layers), **router.info}

"""``dama lid train``: fit the language router on the adapters' own training clips and on other languages' clips,
then calibrate its confidence threshold on validation clips.

Each adapter's run folder says what it was trained on (``config.json``: ``data.train``, ``language``), so
the router learns each adapter's language from exactly the audio that adapter knows; ``--other`` brings
clips of languages no adapter serves. A language of ``--other`` that Whisper has a token for and that
brings at least ``min_language_clips`` clips gets a class of its own (``base-am``: the bare base model in
that language), since Whisper's own detection is often wrong on low-resource languages; the rest (a few
clips each of many languages, e.g. FLEURS) pool into ``base``, where Whisper's detection decides.

At most ``max_per_class`` clips per class, evenly spread over the data (for ``base``, shared out equally
among its languages, so a big corpus does not crowd out the others). The threshold below which the router
defers to Whisper is chosen on validation clips (``val``/``other_val``; by default the same corpora's val
splits), never on the training clips the classifier has fit perfectly. ``cache``: a file keeping every
clip's encoder statistics (:mod:`dama.serve.lid_cache`), so a re-fit costs no encoder pass. With the
default layer (the last), clips whose encoder outputs a run's encoder cache holds (every adapter's training
clips, cached by ``dama train``) cost one decoder step instead of an encoder pass.

Every class also gets ``crops`` short crops of its training clips (and each language's validation clips
``val_crops``, for the calibration): the corpora's clip lengths differ, and a router fit on whole clips
learns length as language (:mod:`dama.serve.lid_crops`). Crops cost an encoder pass each, once (cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dama.errors import DamaError
from dama.languages import WHISPER_LANGUAGES
from dama.runs import RunFolder
from dama.serve.lid import BASE, ClipFeatures, LanguageRouter, base_class, default_layers
from dama.serve.lid_crops import DEFAULT_SECONDS, cached_crop_stats, make_crops


@dataclass
class LidTrainOptions:
    adapters: dict[str, str | Path] = field(default_factory=dict)
    other: str | None = None  # data spec of languages no adapter serves
    out: str | Path | None = None  # default: lid/ beside the run folders, where dama serve finds it
    model: str | None = None
    data_root: str | None = None
    max_per_class: int = 200
    min_language_clips: int = 20  # an --other language with this many clips (and a Whisper token) gets its class
    c: float | None = None  # None: chosen by cross-validation
    layers: tuple[int, ...] | None = None  # encoder layers pooled (hidden_states indices); None: the last
    val: str | None = None  # adapters' validation clips; None: each training corpus's val split; "none": no calibration
    other_val: str | None = None  # --other languages' validation clips; None: their corpora's val splits
    max_val_per_class: int = 60
    threshold: float | None = None  # fixed threshold instead of calibrating one
    cache: str | Path | None = None  # router feature cache (.npz)
    encoder_caches: tuple[str | Path, ...] | None = None  # dama train's encoder caches; None: the runs' own
    crops: int = 50  # short crops of each class's training clips (an encoder pass each; 0: whole clips only)
    val_crops: int = 20  # short crops of each language's validation clips, for calibrating the threshold
    crop_seconds: tuple[float, float] = DEFAULT_SECONDS  # crop lengths, drawn uniformly between these
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


def _val_of(spec: str | None) -> str | None:
    """The val splits of the corpora in ``spec`` (comma-separated parts), where they have one."""
    from dama.data.spec import sibling_split

    parts = [sibling_split(p.strip(), "val") for p in (spec or "").split(",") if p.strip()]
    return ",".join(p for p in parts if p) or None


def other_classes(utts: list, served: set[str], max_per_class: int, min_language_clips: int) -> dict[str, list]:
    """Clips of languages no adapter serves, by class: ``base-LANG`` for a Whisper language with at least
    ``min_language_clips`` clips, ``base`` for the rest (each of its languages an equal share)."""
    by_lang: dict[str | None, list] = {}
    for u in utts:
        if u.language not in served:
            by_lang.setdefault(u.language, []).append(u)
    out: dict[str, list] = {}
    pooled = {}
    for lang, group in by_lang.items():
        if lang in WHISPER_LANGUAGES and len(group) >= min_language_clips:
            out[base_class(lang)] = _spread(group, max_per_class)
        else:
            pooled[lang] = group
    if pooled:
        each = max(1, -(-max_per_class // len(pooled)))
        out[BASE] = [u for group in pooled.values() for u in _spread(group, each)]
    return out


def validation_report(router: LanguageRouter, cf: ClipFeatures, truth: list, n_whole: int,
                      loaded: dict[str, str]) -> dict:
    """Per language, the share of validation clips served right at the router's threshold: whole clips (the
    first ``n_whole`` rows) and short crops (the rest) apart, since routers differ most on short clips."""
    ok = [(d.adapter, d.language) == tuple(r) for d, r in zip(router.decide(cf, loaded), truth)]
    out: dict[str, dict] = {}
    for i, (good, r) in enumerate(zip(ok, truth)):
        kind = "clips" if i < n_whole else "crops"
        row = out.setdefault(r[1], {}).setdefault(kind, [0, 0])
        row[0] += good
        row[1] += 1
    return {lang: {k: {"right": v[0], "of": v[1]} for k, v in kinds.items()} for lang, kinds in out.items()}


def train_router(opts: LidTrainOptions, log=print) -> tuple[LanguageRouter, Path, dict]:
    from dama.data import load_data
    from dama.deploy.serve import MultiAdapterWhisper
    from dama.models.load import model_fingerprint
    from dama.serve.lid_cache import cached_stats, open_cache

    if not opts.adapters:
        raise DamaError("dama lid train needs --adapters KEY=RUN_DIR[,...]")
    out = Path(opts.out) if opts.out else default_out(opts.adapters)
    multi = MultiAdapterWhisper(opts.adapters, base=opts.model, device=opts.device)
    served = set(multi.languages.values())
    sources: dict[str, list] = {}
    val_specs: dict[str, str] = {}
    run_caches: list[Path] = []
    for key, run in opts.adapters.items():
        cfg = RunFolder(run).read_config()
        cache_dir = (cfg.get("train") or {}).get("cache_dir")
        run_caches.append(Path(cache_dir) if cache_dir else Path(run).resolve().parent / ".encoder-cache")
        spec = (cfg.get("data") or {}).get("train")
        if not spec:
            raise DamaError(f"{run}: its config.json names no training data; cannot learn adapter {key}'s language")
        if not multi.languages.get(key):
            raise DamaError(f"adapter {key} ({run}) was trained on several or no languages; the router needs one")
        sources[key] = _spread(list(load_data(spec, opts.data_root)), opts.max_per_class)
        if opts.val is None and (v := _val_of(spec)):
            val_specs[key] = v
    if opts.other:
        sources.update(other_classes(list(load_data(opts.other, opts.data_root)), served, opts.max_per_class,
                                     opts.min_language_clips))
    languages = {k: v for k, v in multi.languages.items() if v}
    languages.update({c: c.split("-", 1)[1] for c in sources if c.startswith(BASE + "-")})

    # validation clips, each with the route it should get: (adapter or None, language)
    val: list[tuple[object, tuple[str | None, str]]] = []
    if opts.val != "none" and opts.threshold is None:
        by_lang = {lang: k for k, lang in multi.languages.items() if lang}
        adapter_val = ([u for spec in val_specs.values() for u in load_data(spec, opts.data_root)] if opts.val is None
                       else list(load_data(opts.val, opts.data_root)))
        other_val = opts.other_val if opts.other_val is not None else _val_of(opts.other)
        if other_val and other_val != "none":
            adapter_val += list(load_data(other_val, opts.data_root))
        groups: dict[str | None, list] = {}
        for u in adapter_val:
            groups.setdefault(u.language, []).append(u)
        for lang, group in groups.items():
            if lang:
                val += [(u, (by_lang.get(lang), lang)) for u in _spread(group, opts.max_val_per_class)]

    layers = tuple(opts.layers) if opts.layers else default_layers(multi.whisper)
    cache = open_cache(multi.whisper, opts.cache, layers)
    enc_caches = [Path(p) for p in (opts.encoder_caches if opts.encoder_caches is not None else
                                    dict.fromkeys(run_caches)) if Path(p).is_dir()]
    crops = {cls: make_crops(utts, opts.crops, opts.crop_seconds, seed=cls) for cls, utts in sources.items()}
    val_crops = []
    for truth in dict.fromkeys(r for _, r in val):  # each language's validation clips, cropped alike
        group = [u for u, r in val if r == truth]
        val_crops += [(c, truth) for c in make_crops(group, opts.val_crops, opts.crop_seconds, seed=f"val-{truth[1]}")]
    feats, labels = [], []
    with multi.using(None):
        for cls, utts in sources.items():
            log(f"lid: {cls}: {len(utts)} clips, {len(crops[cls])} short crops")
            es = cached_stats(multi.whisper, utts, cache, encoder_caches=enc_caches, log=log)
            feats.append(es.features(layers).features)
            labels += [cls] * len(utts)
            if crops[cls]:
                feats.append(cached_crop_stats(multi.whisper, crops[cls], cache, log=log).features(layers).features)
                labels += [cls] * len(crops[cls])
        val_cf = (cached_stats(multi.whisper, [u for u, _ in val], cache, encoder_caches=enc_caches, log=log)
                  .features(layers) if val else None)
        if val_crops:
            cf = cached_crop_stats(multi.whisper, [c for c, _ in val_crops], cache, log=log).features(layers)
            val_cf = ClipFeatures(np.concatenate([val_cf.features, cf.features]),
                                  np.concatenate([val_cf.whisper_probs, cf.whisper_probs]), cf.codes)
    val_truth = [r for _, r in val] + [r for _, r in val_crops]
    x = np.concatenate(feats)
    info = {"trained_on": {k: len(v) for k, v in sources.items()}, "other": opts.other, "model": multi.whisper.name,
            "crops": {"per_class": {k: len(v) for k, v in crops.items()}, "validation": len(val_crops),
                      "seconds": list(opts.crop_seconds)}}
    router = LanguageRouter.fit(x, labels, languages, c=opts.c,
                                fingerprint=model_fingerprint(multi.whisper.model.get_encoder()), info=info,
                                layers=layers)
    train_acc = float(np.mean(np.array(router.classes)[router.probabilities(x).argmax(1)] == np.array(labels)))
    router.info["train_accuracy"] = round(train_acc, 4)
    loaded = {k: v for k, v in multi.languages.items() if v}
    if opts.threshold is not None:
        router.threshold = float(opts.threshold)
    elif val_cf is not None:
        t = router.calibrate(val_cf, val_truth, loaded)
        log(f"lid: threshold {t} calibrated on {len(val)} validation clips + {len(val_crops)} crops "
            f"(served right: {router.info['calibration']['accuracy_at_threshold']:.3f})")
    else:
        log("lid: no validation clips: threshold 0 (the router always decides)")
    if val_cf is not None:
        router.info["validation"] = validation_report(router, val_cf, val_truth, len(val), loaded)
    router.save(out)
    log(f"lid: router with classes {router.classes} (train accuracy {train_acc:.3f}) saved in {out}")
    return router, out, {"out": str(out), "classes": router.classes, "train_accuracy": train_acc,
                         "layers": list(layers), "threshold": router.threshold, **router.info}

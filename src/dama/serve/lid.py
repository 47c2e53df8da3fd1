"""Language routing: which adapter (or the bare base model) should serve a clip whose language is not given.

Design. Whisper's own language detection (one decoder step after ``<|startoftranscript|>``) knows
its 99 languages but not a language added by an adapter (``rw``, ``pcm``: no token), and on
low-resource languages it is often wrong (whisper-base takes much Yoruba for English). The encoder,
though, is shared and frozen by every adapter: its output already separates languages well. So the
router is a multinomial logistic regression over one feature vector per clip:

* per pooled encoder layer (default: the last one), the mean and standard deviation over
  time of the frozen encoder's hidden states, over the frames that hold audio (not Whisper's zero padding);
* Whisper's own language log-probabilities over its languages — what the base model already knows.

Its classes are the adapters' keys, ``base-LANG`` for a language the bare base model serves in its own
token (``base-am``: fit on that language's clips, because Whisper's detection is unreliable on it), and
``base`` ("another language": Whisper's detection decides). It is fit by ``dama lid train`` on the
adapters' own training clips (each run's config names its training data) and on clips of other languages.
A logistic regression fit on a few hundred clips of one or two speakers per language is sure of itself
on audio like its training clips and may be confidently wrong on audio unlike any of them, so below a
``threshold`` on its best class's probability the router defers to Whisper's own detection (on the adapter
of the detected language if one is loaded, else on the bare base model): the threshold is calibrated on
validation clips, never the training or test clips (:meth:`LanguageRouter.calibrate`).
One encoder pass per clip, no extra model in memory; the classifier is a few thousand numbers per class.

Saved as ``lid.safetensors`` (weights, feature mean/std) + ``lid.json`` (classes, languages, threshold,
base model fingerprint): never a pickle, so loading a router runs no code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE
from dama.errors import ModelError
from dama.languages import WHISPER_LANGUAGES
from dama.models.load import Whisper
from dama.safeio import FileError, read_json

BASE = "base"
WEIGHTS_NAME = "lid.safetensors"
META_NAME = "lid.json"
FORMAT = "dama-lid/3"  # /3: a calibrated ``threshold``; /2: pooled layers listed (``layers``); /1: last layer only
OLD_FORMATS = ("dama-lid/1", "dama-lid/2")
C_GRID = (0.001, 0.01, 0.1, 1.0)  # inverse L2 strengths cross-validated when none is given
THRESHOLD_GRID = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # router confidences tried by calibrate()
FRAMES_PER_SECOND = 50  # encoder output frames per second of audio (1500 per 30 s window)


@dataclass
class ClipFeatures:
    """Per clip: the router's feature vector, and Whisper's own language probabilities."""

    features: np.ndarray  # (n, 2*d_model + n_whisper_languages)
    whisper_probs: np.ndarray  # (n, n_whisper_languages), over ``codes``
    codes: list[str]


def whisper_language_ids(w: Whisper) -> tuple[list[str], list[int]]:
    """Whisper's own language codes and token ids (tokens added for new languages excluded)."""
    lang_to_id = w.generation_config.lang_to_id or {}
    pairs = [(tok[2:-2], i) for tok, i in lang_to_id.items() if tok[2:-2] in WHISPER_LANGUAGES]
    if not pairs:
        raise ModelError(f"{w.name} has no language tokens: it is not multilingual, nothing to route")
    return [c for c, _ in pairs], [i for _, i in pairs]


def default_layers(w: Whisper) -> tuple[int, ...]:
    """Encoder layers pooled by default: the last one (hidden_states index = encoder_layers). ``dama train``
    caches exactly these outputs for every training clip, so fitting a router on the adapters' own training
    clips costs a decoder step per clip instead of an encoder pass; and with a few hundred clips per class it
    separates the languages measured here (docs/serving.md). Other layers: ``dama lid train --layers``."""
    return (w.model.config.encoder_layers,)


@dataclass
class EncoderStats:
    """Per clip, what a router needs: the mean and standard deviation over the frames that hold audio of the
    encoder hidden states ``layers`` (hidden_states indices: 0 = input embeddings ... last), and Whisper's
    own language probabilities. A few kB per clip, so they are worth keeping (:mod:`dama.serve.lid_cache`):
    re-fitting a router then costs no encoder pass."""

    stats: np.ndarray  # (n, len(layers), 2, d_model): mean, std
    whisper_probs: np.ndarray  # (n, n_whisper_languages), over ``codes``
    codes: list[str]
    layers: tuple[int, ...]

    def features(self, layers: Sequence[int]) -> ClipFeatures:
        """The router's feature vectors for ``layers``: each layer's mean and std, then Whisper's log-probs."""
        missing = [i for i in layers if i not in self.layers]
        if missing:
            raise ModelError(f"encoder layers {missing}: not pooled here (these statistics hold layers "
                             f"{list(self.layers)})")
        pooled = self.stats[:, [self.layers.index(i) for i in layers]].reshape(len(self.stats), -1)
        feats = np.concatenate([pooled, np.log(self.whisper_probs + 1e-8)], axis=1).astype(np.float32)
        return ClipFeatures(feats, self.whisper_probs, self.codes)


def _pool(h: torch.Tensor, seconds: Sequence[float]) -> np.ndarray:
    """(b, layers, frames, d) hidden states -> (b, layers, 2, d): mean and std over each clip's audio frames."""
    out = []
    for k, sec in enumerate(seconds):
        n = max(1, min(h.shape[2], int(np.ceil(sec * FRAMES_PER_SECOND))))
        x = h[k, :, :n]
        out.append(torch.stack([x.mean(1), x.std(1, unbiased=False)], dim=1).cpu().numpy())
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def _language_probs(w: Whisper, last_hidden: torch.Tensor, ids: list[int]) -> np.ndarray:
    model = w.model
    start = torch.full((last_hidden.shape[0], 1), w.generation_config.decoder_start_token_id, device=w.device)
    logits = model(encoder_outputs=(last_hidden,), decoder_input_ids=start).logits[:, -1].float()
    return torch.softmax(logits[:, ids], dim=-1).cpu().numpy()


@torch.no_grad()
def encoder_stats(w: Whisper, audios: Sequence[np.ndarray], batch_size: int = 8,
                  layers: Sequence[int] | None = None) -> EncoderStats:
    """One encoder pass per clip (its first 30 s, padded as Whisper pads it) and one decoder step: the pooled
    statistics of the encoder hidden states ``layers`` (default: all of them) and Whisper's language
    probabilities. Call it on the base model with adapters disabled: routers are fit on the frozen encoder."""
    codes, ids = whisper_language_ids(w)
    model = w.model
    cfg = model.config
    layers = tuple(layers) if layers is not None else tuple(range(cfg.encoder_layers + 1))
    if any(not 0 <= i <= cfg.encoder_layers for i in layers):
        raise ModelError(f"encoder layers {list(layers)}: {w.name} has hidden states 0 (input) to "
                         f"{cfg.encoder_layers} (last)")
    stats, probs = [], []
    limit = int(CHUNK_SECONDS * SAMPLE_RATE)
    for b in range(0, len(audios), batch_size):
        clips = [a[:limit] for a in audios[b: b + batch_size]]
        mel = w.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        out = model.get_encoder()(mel.to(w.device, dtype=model.dtype), output_hidden_states=True)
        states = torch.stack([out.hidden_states[i].float() for i in layers], dim=1)  # (b, layers, frames, d)
        stats.append(_pool(states, [len(a) / SAMPLE_RATE for a in clips]))
        probs.append(_language_probs(w, out.last_hidden_state, ids))
    return _stack(stats, probs, codes, layers, cfg.d_model)


@torch.no_grad()
def stats_from_encoder_outputs(w: Whisper, outputs: Sequence[np.ndarray], seconds: Sequence[float],
                               batch_size: int = 8) -> EncoderStats:
    """:func:`encoder_stats` of the last layer only, from encoder outputs computed earlier (the encoder cache
    of ``dama train``: float16, as good as the live float32 pass for pooling to within ~1e-3): no encoder
    pass, only the decoder step for Whisper's language probabilities."""
    codes, ids = whisper_language_ids(w)
    model = w.model
    last = model.config.encoder_layers
    stats, probs = [], []
    for b in range(0, len(outputs), batch_size):
        h = torch.from_numpy(np.stack(outputs[b: b + batch_size])).to(w.device, dtype=model.dtype)
        stats.append(_pool(h.float()[:, None], seconds[b: b + batch_size]))
        probs.append(_language_probs(w, h, ids))
    return _stack(stats, probs, codes, (last,), model.config.d_model)


def _stack(stats: list, probs: list, codes: list[str], layers: tuple[int, ...], d: int) -> EncoderStats:
    return EncoderStats(np.concatenate(stats) if stats else np.zeros((0, len(layers), 2, d), np.float32),
                        np.concatenate(probs) if probs else np.zeros((0, len(codes)), np.float32), codes, layers)


def clip_features(w: Whisper, audios: Sequence[np.ndarray], batch_size: int = 8,
                  layers: Sequence[int] | None = None) -> ClipFeatures:
    """The router's feature vector of each clip (its first 30 s): per encoder layer in ``layers``
    (hidden_states indices; default :func:`default_layers`), the mean and standard deviation over the
    frames that hold audio, then Whisper's language log-probabilities."""
    layers = tuple(layers) if layers else default_layers(w)
    return encoder_stats(w, audios, batch_size, layers).features(layers)


@dataclass
class Decision:
    """Where a clip goes: ``adapter`` (None: the bare base model) and ``language``. ``by``: who decided —
    ``router`` (its class, confident enough), or ``whisper`` (Whisper's own detection: the router is
    below its threshold, or classed the clip ``base``, or there is no router)."""

    adapter: str | None
    language: str
    probability: float  # the router's probability of its choice (Whisper's, where Whisper decided)
    by: str = "router"


class LanguageRouter:
    """The fitted classifier. ``classes``: adapter keys, ``base-LANG`` classes (a language the bare base model
    serves in its own token, e.g. ``base-am``), and ``base`` (any other language: Whisper decides);
    ``languages``: class -> language code; ``threshold``: below this probability of its best class the router
    defers to Whisper's own detection (0: never; calibrated on validation clips by :meth:`calibrate`)."""

    def __init__(self, classes: list[str], languages: dict[str, str], weight: np.ndarray, bias: np.ndarray,
                 mean: np.ndarray, std: np.ndarray, fingerprint: str | None = None, info: dict | None = None,
                 layers: Sequence[int] | None = None, threshold: float = 0.0):
        self.classes, self.languages = list(classes), dict(languages)
        self.layers = tuple(int(i) for i in layers) if layers else None  # None: the encoder's last layer only
        # C order: scikit-learn's coef_ can be Fortran-ordered, and safetensors.numpy.save writes an array's raw
        # buffer, so a Fortran-ordered weight came back from disk scrambled (the served router then routed at
        # random while the in-memory one was right: the previous session's rw 0/8)
        self.weight, self.bias = (np.ascontiguousarray(a, dtype=np.float32) for a in (weight, bias))
        self.mean, self.std = (np.ascontiguousarray(a, dtype=np.float32) for a in (mean, std))
        self.fingerprint, self.info = fingerprint, info or {}
        self.threshold = float(threshold)

    def feature_layers(self, w: Whisper) -> tuple[int, ...]:
        """The encoder layers this router pools (a /1 router: the last one)."""
        return self.layers or (w.model.config.encoder_layers,)

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[str], languages: dict[str, str], c: float | None = None,
            fingerprint: str | None = None, info: dict | None = None,
            layers: Sequence[int] | None = None) -> LanguageRouter:
        """Standardise, then an L2-regularised multinomial logistic regression (scikit-learn), balanced classes.
        ``c`` None: the regularisation is chosen by stratified cross-validation over :data:`C_GRID` (features
        outnumber clips several times over, so the right strength matters and is cheap to find)."""
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ModelError(f"a router needs clips of at least two classes, got only {classes}")
        mean, std = features.mean(0), features.std(0) + 1e-6
        x = (features - mean) / std
        folds = min(5, min(list(labels).count(k) for k in classes))
        if c is None and folds >= 2:
            cv = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, max_iter=2000, class_weight="balanced")
            c = float(cv.fit(x, list(labels)).C_[0])
        c = 1.0 if c is None else c
        info = {**(info or {}), "c": c}
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        clf.fit(x, list(labels))
        weight, bias = clf.coef_, clf.intercept_
        if len(classes) == 2:  # sklearn keeps one row for two classes: make it a softmax over both
            weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
        return cls([str(c) for c in clf.classes_], languages, weight, bias, mean, std, fingerprint, info, layers)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.std) @ self.weight.T + self.bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def decide(self, cf: ClipFeatures, loaded: dict[str, str], threshold: float | None = None) -> list[Decision]:
        """Route each clip. ``loaded``: adapter key -> language of the adapters being served (an adapter class
        of the router that is not loaded is left to Whisper). ``threshold``: instead of the router's own."""
        probs = self.probabilities(cf.features)
        t = self.threshold if threshold is None else threshold
        return [_decide(p, self.classes, self.languages, cf.whisper_probs[i], cf.codes, loaded, t)
                for i, p in enumerate(probs)]

    def calibrate(self, cf: ClipFeatures, truth: Sequence[tuple[str | None, str]], loaded: dict[str, str],
                  grid: Sequence[float] = THRESHOLD_GRID) -> float:
        """Choose :attr:`threshold` on held-out clips whose right route is known (``truth``: (adapter or None,
        language) per clip): the grid value where the most clips are served right, ties broken toward the
        middle of the best run of thresholds (the one farthest from where accuracy drops on either side).
        Deferring to Whisper helps on clips unlike any the router saw and hurts on clips of a language Whisper
        cannot name (``rw``), so how far to trust the router is an empirical question: answered on validation
        clips, never on test clips. Records the accuracy at each grid value in ``info["calibration"]``."""
        if not len(truth):
            raise ModelError("calibrating the router needs validation clips")
        acc = []
        for t in grid:
            ds = self.decide(cf, loaded, threshold=t)
            acc.append(float(np.mean([(d.adapter, d.language) == tuple(r) for d, r in zip(ds, truth)])))
        best = max(acc)
        run, runs = [], []
        for i, a in enumerate(acc):  # maximal runs of consecutive grid values at the best accuracy
            if a >= best - 1e-12:
                run.append(i)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        longest = max(runs, key=len)
        i = longest[(len(longest) - 1) // 2]
        self.threshold = float(grid[i])
        self.info["calibration"] = {"clips": len(truth), "grid": [float(t) for t in grid],
                                    "accuracy": [round(a, 4) for a in acc], "threshold": self.threshold,
                                    "accuracy_at_threshold": round(acc[i], 4)}
        return self.threshold

    # -- files --------------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save

        from dama.outputs import atomic_write, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blob = save({"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std})
        atomic_write(folder / WEIGHTS_NAME, lambda f: f.write(blob))

        meta = {"format": FORMAT, "classes": self.classes, "languages": self.languages,
                "base_fingerprint": self.fingerprint, "layers": list(self.layers) if self.layers else None,
                "threshold": self.threshold, **self.info}
        atomic_write_text(folder / META_NAME, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LanguageRouter:
        from safetensors.numpy import load

        folder = Path(folder)
        meta = read_json(folder / META_NAME, what="language router", fix="Build one with dama lid train.")
        if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, *OLD_FORMATS):
            raise FileError(f"{folder / META_NAME}: not a dama language router ({FORMAT}); "
                            "rebuild it with dama lid train")
        threshold = meta.get("threshold") or 0.0  # /1 and /2 routers had none: the router always decided
        if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise FileError(f"{folder / META_NAME}: threshold {threshold!r} is not a probability; "
                            "rebuild it with dama lid train")
        try:
            t = load((folder / WEIGHTS_NAME).read_bytes())
            router = cls(meta["classes"], meta["languages"], t["weight"], t["bias"], t["mean"], t["std"],
                         meta.get("base_fingerprint"), {k: v for k, v in meta.items() if k not in
                                                        ("format", "classes", "languages", "base_fingerprint",
                                                         "layers", "threshold")}, meta.get("layers"), threshold)
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise FileError(f"{folder / WEIGHTS_NAME}: cannot read the router's weights ({e}); "
                            "rebuild it with dama lid train") from e
        n = len(router.classes)
        if router.weight.shape != (n, router.mean.shape[0]) or router.bias.shape != (n,):
            raise FileError(f"{folder}: router weights do not match its {len(router.classes)} classes; rebuild it")
        return router


def base_class(language: str) -> str:
    """The class of a language the bare base model serves in its own token (``base-am``)."""
    return f"{BASE}-{language}"


def _decide(p: np.ndarray, classes: list[str], languages: dict[str, str], whisper_p: np.ndarray, codes: list[str],
            loaded: dict[str, str], threshold: float) -> Decision:
    k = int(np.argmax(p))
    cls, prob = classes[k], float(p[k])
    if prob >= threshold:
        if cls in loaded:
            return Decision(cls, loaded[cls], prob)
        lang = languages.get(cls)
        if cls != BASE and lang in codes:  # a base-LANG class (or an adapter not loaded whose language Whisper has)
            by_lang = {v: k for k, v in loaded.items()}
            return Decision(by_lang.get(lang), lang, prob)
    return whisper_decision(whisper_p, codes, loaded)


def whisper_decision(whisper_p: np.ndarray, codes: list[str], loaded: dict[str, str]) -> Decision:
    """Whisper's own detected language, on the adapter of that language if one is loaded."""
    j = int(np.argmax(whisper_p))
    lang = codes[j]
    by_lang = {v: k for k, v in loaded.items()}
    return Decision(by_lang.get(lang), lang, float(whisper_p[j]), by="whisper")

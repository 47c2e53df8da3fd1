"""Three per-layer measures of where a model is language-specific, and where it would adapt.

1. ``lid_probe``: held-out balanced accuracy of a deliberately weak language-ID classifier
   (standardise, PCA to a few dimensions, logistic regression, few training clips per
   language), repeated over random splits; a strong probe saturates at every layer.
2. ``language_variance`` (and ``linear_cka`` for parallel content): how much of a layer's
   variance lies between language means rather than within languages — a similarity
   measure across languages that needs no classifier.
3. ``gradient_importance``: summed squared gradients (empirical Fisher) of each layer's
   adaptable weights on target-language transcripts — where training would move the model.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from dama.errors import DamaError


def _check_languages(langs: list[str], min_per_lang: int) -> dict[str, np.ndarray]:
    counts = Counter(langs)
    if len(counts) < 2:
        raise DamaError(f"a language-ID probe needs clips in at least two languages; got {sorted(counts)}")
    few = {k: v for k, v in counts.items() if v < min_per_lang}
    if few:
        raise DamaError(f"too few clips for the probe split (need {min_per_lang} per language): "
                        + ", ".join(f"{k}: {v}" for k, v in sorted(few.items()))
                        + "; add clips or lower --train-per-language")
    arr = np.array(langs)
    return {k: np.flatnonzero(arr == k) for k in sorted(counts)}


def lid_probe(x: np.ndarray, langs: list[str], train_per_language: int = 5, dims: int = 8, repeats: int = 20,
              c: float = 1.0, seed: int = 0) -> dict:
    """Balanced held-out accuracy of a restricted language-ID probe on features ``x`` (N, d).

    Each repeat trains on ``train_per_language`` random clips per language (PCA to ``dims``
    fitted on those only) and tests on all the others. Returns mean, std and chance level.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    groups = _check_languages(langs, train_per_language + 1)
    y = np.array(langs)
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(repeats):
        tr = np.concatenate([rng.choice(idx, train_per_language, replace=False) for idx in groups.values()])
        te = np.setdiff1d(np.arange(len(y)), tr)
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        xtr, xte = (x[tr] - mu) / sd, (x[te] - mu) / sd
        k = min(dims, len(tr) - 1, x.shape[1])
        pca = PCA(n_components=k, random_state=0).fit(xtr)
        clf = LogisticRegression(C=c, max_iter=2000).fit(pca.transform(xtr), y[tr])
        accs.append(balanced_accuracy_score(y[te], clf.predict(pca.transform(xte))))
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "chance": 1 / len(groups),
            "repeats": repeats}


def language_variance(x: np.ndarray, langs: list[str]) -> float:
    """Share of total variance between language means (weighted by clips): 0 = languages share
    one distribution's centre, 1 = every clip sits at its language's mean."""
    groups = _check_languages(langs, 1)
    centred = x - x.mean(0)
    total = float((centred ** 2).sum())
    if total <= 1e-9 * max(float((x ** 2).sum()), 1e-30):  # every clip the same (e.g. decoder embeddings)
        return 0.0
    between = sum(len(idx) * float(((x[idx].mean(0) - x.mean(0)) ** 2).sum()) for idx in groups.values())
    return between / total


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between paired rows of ``x`` (N, d1) and ``y`` (N, d2),
    e.g. the same sentences spoken in two languages. 1 = same geometry up to rotation/scale;
    NaN when a side is constant (identical inputs, e.g. decoder embeddings of one prompt)."""
    if len(x) != len(y) or len(x) < 2:
        raise DamaError(f"linear CKA needs the same number (>= 2) of paired rows, got {len(x)} and {len(y)}")
    scale = max(float(np.abs(x).max()), float(np.abs(y).max()), 1e-30)
    x = (x - x.mean(0)) / scale
    y = (y - y.mean(0)) / scale
    if np.abs(x).max() < 1e-6 or np.abs(y).max() < 1e-6:  # constant features: no geometry to compare
        return float("nan")
    hsic = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(hsic / norm)


DECODER_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                   "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj",
                   "fc1", "fc2")
ENCODER_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2")


def gradient_importance(w, m, language: str | None = None, max_clips: int = 32, batch_size: int = 4,
                        log=print) -> dict:
    """Empirical Fisher per layer: squared gradients of the teacher-forced loss with respect to
    each layer's adaptable weights (DAMA's modules), summed over ``max_clips`` clips of ``m``.
    Returns per-layer totals and per-parameter means, for the decoder and encoder stacks."""
    from dama.data.audio import CHUNK_SECONDS, SAMPLE_RATE, load_audio
    from dama.evaluate.run import manifest_languages
    from dama.train.batches import collate, make_examples

    m.raise_problems()
    m.fill_durations()
    # the same tokens and labels as training (make_examples skips clips over 30 s and over-long transcripts)
    examples, _ = make_examples(w, m, manifest_languages(m, language))
    examples = examples[:max_clips]
    if not examples:
        raise DamaError(f"{m.name}: no clips of at most {CHUNK_SECONDS:.0f} s for gradient importance")
    model = w.model.eval()
    stacks = {"decoder": (model.model.decoder.layers, DECODER_MODULES),
              "encoder": (model.model.encoder.layers, ENCODER_MODULES)}
    params = {name: [[layer.get_submodule(mod).weight for mod in mods] for layer in layers]
              for name, (layers, mods) in stacks.items()}
    was = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for plist in params.values():
        for layer in plist:
            for p in layer:
                p.requires_grad_(True)
    fisher = {name: np.zeros(len(plist)) for name, plist in params.items()}
    try:
        for b in range(0, len(examples), batch_size):
            chunk = examples[b:b + batch_size]
            feats = w.feature_extractor([load_audio(m[e.row].audio, m[e.row].where) for e in chunk],
                                        sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            batch = collate(chunk, w.generation_config.pad_token_id)
            logits = model(input_features=feats.to(w.device, dtype=model.dtype),
                           decoder_input_ids=batch["decoder_input_ids"].to(w.device)).logits
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"].to(w.device),
                                                     ignore_index=-100)
            model.zero_grad(set_to_none=True)
            loss.backward()
            for name, plist in params.items():
                for i, layer in enumerate(plist):
                    fisher[name][i] += sum(float((p.grad.float() ** 2).sum()) for p in layer)
    finally:
        for p, r in was.items():
            p.requires_grad_(r)
            p.grad = None
    sizes = {name: np.array([sum(p.numel() for p in layer) for layer in plist]) for name, plist in params.items()}
    return {name: {"fisher": fisher[name].tolist(), "per_param": (fisher[name] / sizes[name]).tolist(),
                   "clips": len(examples)} for name in params}


__all__ = ["DECODER_MODULES", "ENCODER_MODULES", "gradient_importance", "language_variance", "lid_probe",
           "linear_cka"]

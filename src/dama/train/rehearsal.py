"""Rehearsal: keep what the base model does in the languages it already knows while it learns a new one.

An adapter merged into Whisper changes the decoder for every language, so adapting to Swahili costs
accuracy in English, German, ... (the "forgetting" ``dama bench`` measures on FLEURS control clips).
Rehearsal mixes into every epoch a share of clips in languages the base model already knows, each
labelled with **the base model's own greedy transcript** (self-distillation with hard labels: the
adapter is taught to keep saying what the base model says, so no reference transcript is needed and
the base model's errors are kept, not corrected). The clips can be anyone's speech in those
languages; synthetic speech from ``dama data synth`` (UDHR articles read by espeak-ng) costs nothing,
and must never be the speech forgetting is measured on.

With ``--rehearsal-targets distribution`` a rehearsal clip teaches more than its transcript: at each
position of that transcript, the base model's next-token distribution (its top :data:`TOP_K` tokens,
renormalised), learnt with a soft cross-entropy (equal to the KL divergence from the base model's
distribution up to its constant entropy), as in learning without forgetting (Li & Hoiem, 2016). One
hard label says what the base model would write; the distribution also says how sure it is and what it
would write instead, which is what an adapter drifting towards the new language's spelling changes.

What is kept fixed, so a resumed run replays the same examples: which clips are drawn (seeded by the
run's seed), their labels (greedy decoding is deterministic; the clips' encoder outputs come from
the shared encoder cache) and the base model's distributions (computed again from the base model,
before the adapter is applied).
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import torch

from dama.data.audio import CHUNK_SECONDS
from dama.data.manifest import Manifest
from dama.encoder_cache import ClipInputs
from dama.errors import DataError
from dama.evaluate.cached import decode_rows
from dama.evaluate.run import check_languages
from dama.models.load import Whisper
from dama.models.transcribe import DecodeOptions

TOP_K = 32  # teacher tokens kept per position: a confident model's top 32 hold nearly all its mass


def n_rehearsal(n_target: int, share: float) -> int:
    """How many rehearsal clips make them ``share`` of the training examples next to ``n_target`` target clips."""
    if not 0 <= share < 1:
        raise DataError(f"--rehearsal-share must be in [0, 1), got {share}")
    return round(n_target * share / (1 - share))


def draw(m: Manifest, n: int, seed: int) -> Manifest:
    """``n`` clips of ``m`` (those within Whisper's 30 s window), the same ones for the same seed, in the
    manifest's order. Clips of every language are drawn in turn, so each language gets its share."""
    usable = [u for u in m if (u.duration or 0.0) <= CHUNK_SECONDS]
    by_lang: dict[str, list] = {}
    for u in usable:
        by_lang.setdefault(u.language or "", []).append(u)
    rng = random.Random(f"rehearsal:{seed}")
    for clips in by_lang.values():
        rng.shuffle(clips)
    picked: list = []
    langs = sorted(by_lang)
    while len(picked) < n and any(by_lang.values()):
        for lang in langs:
            if by_lang[lang] and len(picked) < n:
                picked.append(by_lang[lang].pop())
    keep = {id(u) for u in picked}
    return Manifest([u for u in usable if id(u) in keep], name=m.name)


def pseudo_label(w: Whisper, m: Manifest, cache_root: str | Path, opts: DecodeOptions, log=print) -> Manifest:
    """``m`` with each transcript replaced by ``w``'s greedy transcript of the clip in its own language;
    clips the model transcribes as nothing are dropped (an empty target teaches silence)."""
    if not len(m):
        return m
    langs = [u.language for u in m]
    inputs = ClipInputs(w, m, True, cache_root, log)
    hyps = decode_rows(w, inputs, m, list(range(len(m))), langs, opts, desc="rehearsal labels")
    out = Manifest([replace(u, text=h) for u, h in zip(m, hyps) if h.strip()], name=m.name)
    if len(out) < len(m):
        log(f"rehearsal: {len(m) - len(out)} of {len(m)} clips transcribed as nothing by the base model; dropped")
    return out


def rehearsal_manifest(w: Whisper, m: Manifest, n_target: int, share: float, seed: int, cache_root: str | Path,
                       opts: DecodeOptions, log=print) -> Manifest:
    """The rehearsal clips of a run: ``share`` of its training examples drawn from ``m`` and labelled by
    the base model ``w`` (call it before the adapter is applied)."""
    m.raise_problems()
    missing = [u for u in m if not u.language]
    if missing:
        raise DataError(f"{m.name}: rehearsal clips need their own language (first without one: "
                        f"{missing[0].where or missing[0].audio}); give each a 'language' field")
    check_languages(w, m, [u.language for u in m])
    m.fill_durations()
    want = n_rehearsal(n_target, share)
    picked = draw(m, want, seed)
    if len(picked) < want:
        log(f"note: rehearsal data {m.name} has {len(picked)} usable clips, fewer than the {want} that would "
            f"make them {share:.0%} of the training examples; using all of them")
    labelled = pseudo_label(w, picked, cache_root, opts, log)
    langs = sorted({u.language for u in labelled})
    log(f"rehearsal: {len(labelled)} clips in {', '.join(langs)} labelled by the base model "
        f"({len(labelled) / max(1, n_target + len(labelled)):.0%} of the training examples)")
    return labelled


SoftTargets = dict[int, tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def teacher_targets(w: Whisper, m: Manifest, examples: list, cache_root: str | Path, k: int = TOP_K,
                    batch_size: int = 8, log=print) -> SoftTargets:
    """For each example (a :class:`dama.train.batches.Example` of a row of ``m``): ``w``'s top-``k`` next
    tokens at each of its label positions (those :func:`dama.train.batches.collate` labels: the transcript and
    its end of text), as ``(ids, probabilities)`` of shape (positions, k), the probabilities renormalised over
    the k. Call it with the base model, before the adapter is applied."""
    from dama.train.batches import collate

    if not examples:
        return {}
    rows = sorted({e.row for e in examples})
    pos = {r: i for i, r in enumerate(rows)}
    inputs = ClipInputs(w, Manifest([m[r] for r in rows], name=m.name), True, cache_root, log)
    model = w.model
    was_training = model.training
    model.eval()
    pad = w.generation_config.pad_token_id
    out: SoftTargets = {}
    try:
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            cols = collate(chunk, pad)
            kw = inputs.model_kwargs([pos[e.row] for e in chunk], w.device, model.dtype)
            logits = model(**kw, decoder_input_ids=cols["decoder_input_ids"].to(w.device), use_cache=False).logits
            for i, e in enumerate(chunk):
                lp = logits[i, e.n_prompt - 1:len(e.tokens) - 1].float()
                top, ids = lp.topk(min(k, lp.shape[-1]), dim=-1)
                out[e.row] = (ids.cpu(), top.softmax(-1).cpu())
    finally:
        model.train(was_training)
    return out


def soft_batch(batch: list, targets: SoftTargets, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The soft targets of a collated batch (``width`` label columns): a mask of the positions that have one,
    and their token ids and probabilities, each (batch, width[, k]); None when no example of ``batch`` has any."""
    have = [(i, targets[e.row], e) for i, e in enumerate(batch) if e.row in targets]
    if not have:
        return None
    k = have[0][1][0].shape[-1]
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    ids = torch.zeros(len(batch), width, k, dtype=torch.long)
    probs = torch.zeros(len(batch), width, k)
    for i, (t_ids, t_p), e in have:
        start = e.n_prompt - 1
        mask[i, start:start + len(t_ids)] = True
        ids[i, start:start + len(t_ids)] = t_ids
        probs[i, start:start + len(t_ids)] = t_p
    return mask, ids, probs

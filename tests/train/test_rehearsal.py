"""Rehearsal (``--rehearsal SPEC --rehearsal-share S``): clips in the base model's languages, labelled by the
base model itself, mixed into training."""

from __future__ import annotations

import json

import pytest

from dama.adapt import make_method
from dama.data import load_data
from dama.data.manifest import Manifest
from dama.errors import DamaError, DataError
from dama.models.load import load_whisper
from dama.models.transcribe import DecodeOptions
from dama.testing import make_corpus, write_wav
from dama.train.config import TrainConfig
from dama.train.rehearsal import draw, n_rehearsal, pseudo_label


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "data")


@pytest.fixture
def control(tmp_path):
    """A manifest of 12 clips in en and yo (the tiny model's languages besides sw; tones, their transcripts are
    never used) and one clip over 30 s."""
    d = tmp_path / "control"
    rows = []
    for i in range(12):
        lang = ("en", "yo")[i % 2]
        write_wav(d / f"c{i}.wav", 1.0 + 0.1 * i, freq=300 + 40 * i)
        rows.append({"audio_filepath": f"c{i}.wav", "text": "not used", "language": lang})
    write_wav(d / "long.wav", 31.0, freq=1000)
    rows.append({"audio_filepath": "long.wav", "text": "too long", "language": "en"})
    (d / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "m.jsonl"


def test_share_and_draw(control):
    assert n_rehearsal(8, 0.2) == 2 and n_rehearsal(8, 0.5) == 8 and n_rehearsal(8, 0.0) == 0
    with pytest.raises(DataError, match="rehearsal-share"):
        n_rehearsal(8, 1.0)
    with pytest.raises(DamaError, match="rehearsal_share"):
        TrainConfig(rehearsal_share=1.0)
    m = load_data(str(control))
    m.fill_durations()
    six = draw(m, 6, seed=0)
    assert [u.language for u in six].count("en") == 3 and [u.language for u in six].count("yo") == 3
    assert six == draw(m, 6, seed=0) and six != draw(m, 6, seed=1)  # fixed by the seed (resume replays it)
    assert all(u.duration <= 30 for u in draw(m, 100, seed=0)) and len(draw(m, 100, seed=0)) == 12


def test_labels_are_the_base_models_own_transcripts(tiny_whisper, control, tmp_path):
    m = load_data(str(control))
    m.fill_durations()
    m = Manifest(m[:12], name=m.name)
    labelled = pseudo_label(tiny_whisper, m, tmp_path / "cache", DecodeOptions(), log=lambda *a: None)
    from dama.data.audio import load_audio
    from dama.models.transcribe import transcribe

    direct = {u.id: transcribe(tiny_whisper, [load_audio(u.audio)], u.language)[0] for u in m}
    assert labelled and all(u.text == direct[u.id] and u.text.strip() for u in labelled)
    assert {u.id for u in labelled} == {k for k, v in direct.items() if v.strip()}  # empty ones dropped


def test_training_mixes_rehearsal_examples_in_their_own_languages(tiny_ct2_dir, corpus, control, tmp_path):
    from dama.train.trainer import Trainer

    w = load_whisper(tiny_ct2_dir)
    tr = load_data("swahili:train", corpus)
    cfg = TrainConfig(epochs=1, batch_size=4, cache_dir=str(tmp_path / "cache"), rehearsal=str(control),
                      rehearsal_share=0.5)
    from dama.runs import RunFolder

    t = Trainer(w, make_method("dama"), tr, None, RunFolder(tmp_path / "run"), cfg, "sw", log=lambda *a: None)
    adapted, state, summary = t.fit(resume=False)
    n_target = summary["train_utterances"]
    assert n_target == 8 and 0 < summary["rehearsal_utterances"] <= 8
    sw, en, yo = (w.language_token_id(c) for c in ("sw", "en", "yo"))
    target = [e for e in t.examples if e.row < t.n_target]
    rehearsal = [e for e in t.examples if e.row >= t.n_target]
    assert all(e.tokens[1] == sw for e in target)  # the run's language for its own data ...
    assert {e.tokens[1] for e in rehearsal} <= {en, yo}  # ... and each rehearsal clip's own language
    for e in rehearsal:
        u = t.train_m[e.row]
        assert w.tokenizer.decode(e.tokens[e.n_prompt:-1]).strip() == u.text  # the base model's transcript
    assert state.step == -(-len(t.examples) // 4)  # target and rehearsal examples, batch 4


def test_rehearsal_clips_need_a_language(tiny_ct2_dir, corpus, tmp_path):
    from dama.runs import RunFolder
    from dama.train.trainer import Trainer

    d = tmp_path / "nolang"
    write_wav(d / "a.wav")
    (d / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "text": "x"}) + "\n")
    cfg = TrainConfig(epochs=1, batch_size=4, cache_dir=str(tmp_path / "cache"), rehearsal=str(d / "m.jsonl"))
    t = Trainer(load_whisper(tiny_ct2_dir), make_method("lora"), load_data("swahili:train", corpus), None,
                RunFolder(tmp_path / "run"), cfg, "sw", log=lambda *a: None)
    with pytest.raises(DataError, match="own language"):
        t.fit(resume=False)



def test_distribution_targets_are_the_base_models_and_train(tiny_ct2_dir, corpus, control, tmp_path):
    """--rehearsal-targets distribution: each rehearsal example carries the base model's top-k next-token
    distribution at each label position (computed before the adapter exists), target examples none; training
    runs on them."""
    import torch

    from dama.runs import RunFolder
    from dama.train.batches import collate
    from dama.train.rehearsal import TOP_K
    from dama.train.trainer import Trainer

    w = load_whisper(tiny_ct2_dir)
    cfg = TrainConfig(epochs=1, batch_size=4, cache_dir=str(tmp_path / "cache"), rehearsal=str(control),
                      rehearsal_share=0.5, rehearsal_targets="distribution")
    t = Trainer(w, make_method("lora"), load_data("swahili:train", corpus), None, RunFolder(tmp_path / "run"), cfg,
                "sw", log=lambda *a: None)
    adapted, state, summary = t.fit(resume=False)
    rehearsal = [e for e in t.examples if e.row >= t.n_target]
    assert rehearsal and set(t.soft_targets) == {e.row for e in rehearsal}
    e = rehearsal[0]
    ids, p = t.soft_targets[e.row]
    assert ids.shape == p.shape == (len(e.tokens) - e.n_prompt, TOP_K)
    assert torch.allclose(p.sum(-1), torch.ones(len(ids)))
    # the base model's own distribution: an untouched copy of it, teacher-forced on the same tokens
    base = load_whisper(tiny_ct2_dir)
    kw = t.train_inputs.model_kwargs([e.row], "cpu", torch.float32)
    with torch.no_grad():
        logits = base.model.eval()(**kw, decoder_input_ids=collate([e], base.generation_config.pad_token_id)[
            "decoder_input_ids"]).logits[0, e.n_prompt - 1:len(e.tokens) - 1]
    top, top_ids = logits.topk(TOP_K, -1)
    assert torch.equal(ids, top_ids) and torch.allclose(p, top.softmax(-1), atol=1e-6)
    assert state.step == -(-len(t.examples) // 4) and summary["rehearsal_utterances"] == len(rehearsal)


def test_rehearsal_targets_must_be_known():
    with pytest.raises(DamaError, match="rehearsal_targets"):
        TrainConfig(rehearsal_targets="soft")

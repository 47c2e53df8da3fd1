"""Word timings (alignment heads + DTW), segment edges snapped to a fine VAD pass and split at pauses, and
the speech-edge truth: on tiny random Whisper models and synthetic audio, plus whisper-base on real clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dama.alignment import (
    WordTiming,
    align_words,
    alignment_heads,
    attach_words,
    cross_attention_qk,
    dtw,
    median_filter,
    merge_punctuations,
    split_words,
)
from dama.data.audio import SAMPLE_RATE as SR
from dama.evaluate.longform import boundary_errors_ms, speech_edges, speech_truth
from dama.longform import LongformOptions, Segment, snap_to_speech, split_at_pauses, transcribe_long
from dama.testing import make_tiny_ct2
from tests.helpers import SHARED_DATA


@pytest.fixture(scope="module")
def ts_w(tmp_path_factory):
    from dama.models.load import load_whisper

    return load_whisper(make_tiny_ct2(tmp_path_factory.mktemp("tsw") / "tiny-ts", timestamps=True), device="cpu")


def _dtw_reference(x):
    """openai-whisper's dtw_cpu + backtrace, cell by cell."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1))
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, out = n, m, []
    while i > 0 or j > 0:
        out.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    return np.array(out[::-1]).T


def test_dtw_matches_openai_reference():
    rng = np.random.default_rng(0)
    for n, m in ((1, 1), (1, 7), (5, 1), (6, 40), (13, 29)):
        x = rng.normal(size=(n, m))
        got = dtw(x)
        ref = _dtw_reference(x)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), (n, m)
    # three tokens, each attended on one block of frames: the path jumps at the block edges
    x = np.ones((3, 30))
    for k, (a, b) in enumerate(((0, 8), (8, 20), (20, 30))):
        x[k, a:b] = -1.0
    ti, fi = dtw(x)
    starts = [fi[np.argmax(ti == k)] for k in range(3)]
    assert starts == [0, 8, 20]


def test_median_filter_reflects_like_openai():
    x = torch.tensor([[5.0, 1, 9, 2, 8, 3, 7, 4, 6, 0]])
    pad = np.pad(x.numpy()[0], 3, mode="reflect")
    ref = [np.median(pad[i:i + 7]) for i in range(10)]
    assert np.allclose(median_filter(x)[0].numpy(), ref)
    assert torch.equal(median_filter(x[:, :2]), x[:, :2])  # shorter than the padding: unchanged


def test_split_words_and_punctuation(ts_w):
    tok = ts_w.tokenizer
    ids = tok.encode(" habari, yetu ñá.", add_special_tokens=False)  # byte tokens: ñ and á are 2 bytes each
    words, word_tokens = split_words(tok, ids, "sw")
    assert words == [" habari", ",", " yetu", " ñá", "."]
    assert sum(word_tokens, []) == ids
    assert split_words(tok, tok.encode("日本", add_special_tokens=False), "ja")[0] == ["日", "本"]
    timings = [WordTiming(x, t, i, i + 1, 1.0) for i, (x, t) in enumerate(zip(words, word_tokens))]
    merge_punctuations(timings)
    assert [t.word for t in timings] == [" habari,", "", " yetu", " ñá.", ""]
    assert sum((t.tokens for t in timings), []) == ids  # the tokens move with the punctuation


def _listening(w):
    """A random tiny decoder barely looks at the audio: make its cross-attention matter."""
    with torch.no_grad():
        for layer in w.model.model.decoder.layers:
            layer.encoder_attn.out_proj.weight.mul_(30)
    return w


def test_cross_attention_matches_eager_attention_weights(ts_w):
    """The hooked query-key products, softmaxed, are the attention weights transformers' eager attention
    returns, for every (layer, head) asked for."""
    torch.manual_seed(0)
    enc = torch.randn(2, ts_w.model.config.max_source_positions, ts_w.model.config.d_model)
    ids = torch.tensor([ts_w.prompt_ids("en") + [70, 71, 72, 256]] * 2)
    heads = [(1, 0), (0, 3), (1, 2)]
    qk, logits = cross_attention_qk(ts_w, enc, ids, heads)
    impl = ts_w.model.config._attn_implementation
    ts_w.model.config._attn_implementation = "eager"
    try:
        out = ts_w.model.model.decoder(input_ids=ids, encoder_hidden_states=enc, output_attentions=True)
    finally:
        ts_w.model.config._attn_implementation = impl
    for i, (lyr, h) in enumerate(heads):
        assert torch.allclose(qk[:, i].softmax(-1), out.cross_attentions[lyr][:, h], atol=1e-5)
    assert torch.allclose(logits, ts_w.model.proj_out(out.last_hidden_state), atol=1e-4)
    assert alignment_heads(ts_w.model.config, ts_w.generation_config) == [(1, 0)]  # the model's own list
    cfg = type("G", (), {"alignment_heads": None})()
    assert alignment_heads(ts_w.model.config, cfg) == [(1, h) for h in range(4)]  # last half of the layers


def test_align_words_batch_invariant_and_ordered(ts_w):
    w = _listening(ts_w)
    torch.manual_seed(1)
    enc = torch.randn(3, w.model.config.max_source_positions, w.model.config.d_model)
    tok = w.tokenizer
    texts = [tok.encode(s, add_special_tokens=False) for s in (" one two three", " four", "")]
    frames = [400, 150, 300]
    got = align_words(w, enc, texts, frames, "en")
    assert [len(x) for x in got] == [3, 1, 0]
    for words, f in zip(got, frames):
        assert all(0 <= x.start <= x.end <= f / 50 for x in words)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:]))
        assert all(0 <= x.probability <= 1 for x in words)
    alone = align_words(w, enc[:1], texts[:1], frames[:1], "en")[0]
    assert [(x.word, x.start, x.end) for x in alone] == [(x.word, x.start, x.end) for x in got[0]]
    assert [x.word for x in got[0]] == [" one", " two", " three"]


def test_attach_words_gives_each_segment_its_words():
    words = [WordTiming(" a", [1], 0.0, 0.4, 0.9), WordTiming(" b", [2, 3], 0.4, 0.8, 0.8),
             WordTiming(" c", [4], 2.0, 2.5, 0.7)]
    segs = [Segment(10.0, 11.0, "a b", tokens=[1, 2, 3]), Segment(11.5, 13.0, "c", tokens=[4])]
    last = attach_words(segs, words, offset=10.0)
    assert [[x.word for x in s.words] for s in segs] == [[" a", " b"], [" c"]]
    assert (segs[0].start, segs[0].end) == (10.0, 10.8)  # edges at the words
    assert (segs[1].start, segs[1].end) == (12.0, 12.5) and last == 12.5


def _seg(*words):
    ws = [WordTiming(f" {t}", [i], s, e, 1.0) for i, (t, s, e) in enumerate(words)]
    return Segment(ws[0].start, ws[-1].end, "".join(x.word for x in ws).strip(), words=ws)


def test_split_at_pauses_and_snap():
    seg = _seg(("a", 1.0, 1.5), ("b", 1.5, 3.2), ("c", 3.3, 3.8), ("d", 5.0, 5.5))
    # a fine-VAD silence 2.0-3.1 lies between b and c (its middle between theirs; b's timing reaches into
    # it); c-d: a 1.2 s word gap
    out = split_at_pauses([seg], [(2.0, 3.1)], 1.0)
    assert [s.text for s in out] == ["a b", "c", "d"]
    assert out[0].end == 2.0 and out[1].start == 3.3  # b pulled out of the silence
    regions = [(0.9, 2.0), (3.1, 3.7), (4.9, 5.4), (9.0, 9.5)]
    snap_to_speech(out, regions, max_out=1.0)
    assert [(s.start, s.end) for s in out] == [(0.9, 2.0), (3.1, 3.7), (4.9, 5.4)]
    assert all(s.start <= x.start <= x.end <= s.end for s in out for x in s.words)
    # an edge moves out by at most max_out, never across a neighbour; a segment in no region keeps its times
    segs = [Segment(2.0, 3.0, "x"), Segment(3.2, 4.0, "y"), Segment(7.0, 8.0, "z")]
    snap_to_speech(segs, [(0.5, 3.3), (3.35, 4.5)], max_out=1.0)
    assert [(s.start, s.end) for s in segs] == [(2.0, 3.0), (3.2, 4.5), (7.0, 8.0)]


def _tone(seconds, amp=0.3, f=220.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_speech_edges_energy_rule():
    rng = np.random.default_rng(0)
    clip = np.concatenate([np.zeros(800, np.float32), rng.normal(0, 1e-3, int(0.6 * SR)).astype(np.float32),
                           _tone(2.0), rng.normal(0, 1e-3, int(1.5 * SR)).astype(np.float32)])
    clip[int(0.2 * SR): int(0.2 * SR) + 320] += 0.5  # a 20 ms click before the speech: not speech
    on, off = speech_edges(clip)
    assert abs(on - 0.65) <= 0.02 and abs(off - 2.65) <= 0.02
    assert speech_edges(np.zeros(SR, np.float32)) == (0.0, 1.0)
    from dama.data.longform import TrueSegment

    audio = np.concatenate([np.zeros(SR, np.float32), clip])
    (t,) = speech_truth(audio, [TrueSegment(1.0, 1.0 + len(clip) / SR, "x", "c0")])
    assert abs(t.start - 1.65) <= 0.02 and abs(t.end - 3.65) <= 0.02
    assert boundary_errors_ms([t], [Segment(1.7, 3.6, "x")]) == pytest.approx([50, 50], abs=21)


def test_timings_on_tiny_model(ts_w, tmp_path):
    """Every timing choice gives segments inside the audio; words (when asked) lie inside their segment,
    in order, and reach the JSON transcript."""
    from dama.subtitles import format_segments

    w = _listening(ts_w)
    audio = np.concatenate([np.zeros(SR, np.float32), _tone(4.0), np.zeros(2 * SR, np.float32),
                            _tone(3.0, f=330), np.zeros(SR, np.float32)])
    with pytest.raises(Exception, match="unknown timing"):
        LongformOptions(timing="frames")
    for timing in ("tokens", "vad", "words", "words-vad"):
        segs = transcribe_long(w, audio, LongformOptions(language="en", temperatures=(0.0,), timing=timing))
        assert all(0 <= s.start <= s.end <= len(audio) / SR + 0.01 for s in segs), timing
        if timing.startswith("words"):
            for s in segs:
                assert s.words is not None
                assert all(s.start - 1e-6 <= x.start <= x.end <= s.end + 1e-6 for x in s.words), timing
            doc = json.loads(format_segments(segs, "json", language="en"))
            assert all("words" in d and {"start", "end", "word", "probability"} <= set(d["words"][0])
                       for d in doc["segments"] if d["words"])
        else:
            assert all(s.words is None for s in segs)


def test_cli_timing_flag(tmp_path):
    import soundfile as sf

    from dama.cli.main import main

    d = make_tiny_ct2(tmp_path / "tiny-ts", timestamps=True)
    sf.write(tmp_path / "a.wav", np.concatenate([_tone(3.0), np.zeros(SR, np.float32)]), SR)
    for timing in ("tokens", "words-vad"):
        out = tmp_path / timing
        assert main(["transcribe", str(tmp_path / "a.wav"), "--model", str(d), "--language", "en", "--format",
                     "json", "--timing", timing, "--out-dir", str(out), "--device", "cpu"]) == 0
        doc = json.loads((out / "a.json").read_text())
        assert all(("words" in s) == (timing != "tokens") for s in doc["segments"])


@pytest.mark.integration
def test_whisper_base_words_follow_speech(whisper_base, whisper_base_ct2_dir):
    """Real speech (3 Swahili test clips with 1 s gaps): with word timings snapped to the fine VAD (the
    default), the clips' speech starts and ends have a segment edge within 300 ms at the median, words are
    ordered and inside their segments; the same on faster-whisper (word_timestamps=True, the same refinement)."""
    from dama.data.audio import load_audio
    from dama.data.longform import TrueSegment
    from dama.deploy.export import load_faster_whisper

    clips = sorted((SHARED_DATA / "swahili" / "data" / "records" / "test").glob("*.opus"))[:3]
    if not clips:
        pytest.skip(f"no swahili test clips under {SHARED_DATA}")
    parts, truth, t = [np.zeros(SR, np.float32)], [], SR
    for c in clips:
        a = load_audio(c)
        truth.append(TrueSegment(t / SR, (t + len(a)) / SR, "", c.stem))
        parts += [a, np.zeros(SR, np.float32)]
        t += len(a) + SR
    audio = np.concatenate(parts)
    speech = speech_truth(audio, truth)
    segs = transcribe_long(whisper_base, audio, LongformOptions(language="sw"))
    errs = boundary_errors_ms(speech, segs)
    assert np.median(errs) <= 300 and max(errs) <= 1500, errs
    for s in segs:
        assert s.words and all(s.start <= x.start <= x.end <= s.end for x in s.words)
        assert all(a.start <= b.start for a, b in zip(s.words, s.words[1:]))
    fw = load_faster_whisper(whisper_base_ct2_dir, device="cpu", compute_type="float32")
    fw_segs = transcribe_long(fw, audio, LongformOptions(language="sw"))
    assert all(s.words for s in fw_segs)
    fw_errs = boundary_errors_ms(speech, fw_segs)
    assert np.median(fw_errs) <= 300 and max(fw_errs) <= 2000, fw_errs

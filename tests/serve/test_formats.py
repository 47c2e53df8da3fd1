"""Response formats: SubRip and WebVTT clocks, OpenAI's verbose_json fields, and the benchmark's plot helper."""

from __future__ import annotations

from dama.serve.formats import Transcript, render, to_srt, to_vtt
from dama.serve.transcription import Segment
from tests.conftest import load_benchmark


def _t() -> Transcript:
    segs = [Segment(0.0, 29.87, "habari za asubuhi", [1, 2]), Segment(29.87, 3725.5, "karibu sana", [3])]
    return Transcript(segs, "sw", 3725.5, "sw", detected=True, language_probability=0.93, detected_by="router")


def test_srt_and_vtt_clocks():
    t = _t()
    assert to_srt(t.segments) == ("1\n00:00:00,000 --> 00:00:29,870\nhabari za asubuhi\n\n"
                                  "2\n00:00:29,870 --> 01:02:05,500\nkaribu sana\n\n")
    assert to_vtt(t.segments).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:29.870\nhabari za asubuhi\n\n")
    assert render(t, "text") == "habari za asubuhi karibu sana\n"


def test_verbose_json_has_openai_fields_and_says_how_it_was_served():
    v = render(_t(), "verbose_json")
    assert v["language"] == "swahili" and v["duration"] == 3725.5 and v["text"] == "habari za asubuhi karibu sana"
    seg = v["segments"][1]
    assert {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
            "no_speech_prob"} <= set(seg)
    assert seg["avg_logprob"] is None  # not computed: null, never invented
    assert v["dama"] == {"adapter": "sw", "language": "sw", "detected": True, "language_probability": 0.93,
                         "detected_by": "router"}
    new = Transcript([], "pcm", 1.0, "pcm", detected=False, language_name="Nigerian Pidgin")
    assert render(new, "verbose_json")["language"] == "Nigerian Pidgin" and render(new, "json")["text"] == ""


def test_benchmark_confusion_plot(tmp_path):
    bench = load_benchmark("serve_load")
    assert bench.parse_runs("sw=a,yo=b") == {"sw": "a", "yo": "b"}
    bench.plot_confusion({"rows": ["sw", "control"], "columns": ["sw", "base"], "counts": [[4, 1], [0, 5]]},
                         tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000

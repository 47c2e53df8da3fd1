"""The models behind the API: one base, every adapter side by side, the language router, and a request's route.

A request names a ``model`` and maybe a ``language``:

* ``model`` = an adapter key (``sw``): that adapter, in its language unless one is given;
* ``model`` = the base model's name (``whisper-base``): the bare base model (adapters off), in the given
  language or Whisper's own detected one;
* ``model`` = ``auto`` or ``whisper-1`` (what OpenAI clients send): the adapter of the given language if one
  is loaded, else the base model; with no language, the router decides (:mod:`dama.serve.lid`).

Every check that can fail on the request alone happens in :meth:`ServeEngine.plan`, before queueing, so a
bad request costs nothing. Model calls (:meth:`route`, :meth:`transcribe`) run on one worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dama.errors import DamaError
from dama.languages import TO_LANGUAGE_CODE, WHISPER_LANGUAGES
from dama.models.transcribe import DecodeOptions
from dama.serve.lid import BASE, META_NAME, Decision, LanguageRouter, clip_features, whisper_decision
from dama.serve.options import ServeOptions
from dama.serve.transcription import Segment, transcribe_segments, transcribe_timed

log = logging.getLogger("dama.serve")
AUTO_MODELS = ("auto", "whisper-1")


class RequestError(DamaError):
    """A request the server refuses: HTTP ``status``, the form field at fault (``param``) and OpenAI's ``code``."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


@dataclass(frozen=True)
class Plan:
    """Where a request goes before its audio is seen: ``adapter`` (None: base), ``language`` (None: detect).
    ``route``: the router decides the adapter too (model auto, no language); ``timed``: the response shows
    segment times (long-form path)."""

    adapter: str | None
    language: str | None
    route: bool = False
    timed: bool = False

    @property
    def needs_detection(self) -> bool:
        return self.language is None


@dataclass(frozen=True)
class Resolved(Plan):
    """A plan whose language was detected (``probability``: of the router's or Whisper's choice)."""

    probability: float | None = None
    by: str | None = None  # who chose the language: "router" or "whisper"


def find_router(adapters: dict[str, str | Path]) -> Path | None:
    """A router saved beside the adapters: ``lid/`` in the folder holding the run folders (where
    ``dama lid train`` writes by default), if it serves exactly these keys' languages."""
    parents = {Path(p).resolve().parent for p in adapters.values()}
    for parent in parents:
        if (parent / "lid" / META_NAME).is_file():
            return parent / "lid"
    return None


class ServeEngine:
    """Loads the base model once, every adapter on it, and the router; serves routes and decodes."""

    def __init__(self, options: ServeOptions):
        from dama.deploy.serve import MultiAdapterWhisper

        if not options.adapters:
            raise DamaError("dama serve needs at least one adapter: --adapters sw=RUN_DIR[,yo=RUN_DIR...]")
        for key in options.adapters:
            if key in AUTO_MODELS or not key.replace("-", "").replace("_", "").isalnum():
                raise DamaError(f"--adapters: {key!r} cannot be a model id (use letters, digits, - or _; not "
                                f"{' or '.join(AUTO_MODELS)})")
        self.options = options
        self.multi = MultiAdapterWhisper(options.adapters, base=options.model, device=options.device)
        self.whisper = self.multi.whisper
        self.base_name = self.whisper.name
        if self.base_name in options.adapters:
            raise DamaError(f"--adapters: key {self.base_name!r} is the base model's name; pick another")
        self.adapter_languages: dict[str, str] = {}
        for key, lang in self.multi.languages.items():
            if not lang:
                raise DamaError(f"adapter {key} was trained on several or no languages: "
                                "dama serve needs one language per adapter")
            self.adapter_languages[key] = lang
        self.language_names = {nl["code"]: nl["name"] for nl in self.multi.new_languages.values()}
        self.by_language = {}
        for key, lang in self.adapter_languages.items():
            self.by_language.setdefault(lang, key)  # the first adapter given for a language serves it under auto
        lid = options.lid or find_router(options.adapters)
        self.router = LanguageRouter.load(lid) if lid else None
        self.router_path = Path(lid) if lid else None
        if self.router is not None:
            self._check_router()
        else:
            missing = [k for k, lang in self.adapter_languages.items() if lang not in WHISPER_LANGUAGES]
            log.warning("no language router (dama lid train): requests without a language use Whisper's own "
                        "detection%s", f"; adapters {missing} can only be reached with language or model given"
                        if missing else "")
        self.decode = DecodeOptions(num_beams=options.beams, batch_size=max(1, options.batch_size))

    def _check_router(self) -> None:
        from dama.models.load import model_fingerprint

        r = self.router
        if r.fingerprint and r.fingerprint != model_fingerprint(self.whisper.model.get_encoder()):
            raise DamaError(f"router {self.router_path} was fit on another base model's encoder than {self.base_name}; "
                            "rebuild it with dama lid train on this base")
        unknown = [c for c in r.classes
                   if c != BASE and not c.startswith(BASE + "-") and c not in self.adapter_languages]
        if unknown:
            log.warning("router %s knows adapters %s that are not loaded: their clips go to Whisper's detection",
                        self.router_path, unknown)
        tokenless = [c for c in r.classes if c.startswith(BASE + "-") and r.languages.get(c) not in WHISPER_LANGUAGES]
        if tokenless:
            raise DamaError(f"router {self.router_path}: classes {tokenless} name languages Whisper has no token for; "
                            "rebuild it with dama lid train")
        for c in r.classes:
            if c in self.adapter_languages and r.languages.get(c) != self.adapter_languages[c]:
                raise DamaError(f"router {self.router_path}: class {c!r} is language {r.languages.get(c)}, but adapter "
                                f"{c} serves {self.adapter_languages[c]}; rebuild it with dama lid train")

    # -- what is served --------------------------------------------------------------------------------

    def models(self) -> list[dict]:
        """GET /v1/models: auto, the base model, every adapter with its language."""
        own = "dama"
        out = [{"id": "auto", "object": "model", "owned_by": own, "language": None,
                "description": "routes by language: the given one, or the router's choice"},
               {"id": self.base_name, "object": "model", "owned_by": own, "language": None,
                "description": "the base model, no adapter"}]
        for key, lang in self.adapter_languages.items():
            out.append({"id": key, "object": "model", "owned_by": own, "language": lang,
                        "language_name": WHISPER_LANGUAGES.get(lang) or self.language_names.get(lang),
                        "description": f"adapter {key} ({Path(self.options.adapters[key]).name})"})
        return out

    def normalize_language(self, language: str | None) -> str | None:
        if language is None or not language.strip():
            return None
        key = language.strip().lower()
        if key in WHISPER_LANGUAGES or key in self.by_language:
            return key
        if key in TO_LANGUAGE_CODE:
            return TO_LANGUAGE_CODE[key]
        names = {v.lower(): k for k, v in self.language_names.items()}
        if key in names:
            return names[key]
        raise RequestError(f"unknown language {language!r}: give a Whisper code (e.g. sw, en) or one of the adapters' "
                           f"languages ({', '.join(sorted(self.by_language))}), or omit it to detect it",
                           param="language", code="unsupported_language")

    def plan(self, model: str | None, language: str | None, timed: bool = False) -> Plan:
        """Where a request goes, or a :class:`RequestError` (unknown model or language)."""
        return replace(self._plan(model, language), timed=timed)

    def _plan(self, model: str | None, language: str | None) -> Plan:
        lang = self.normalize_language(language)
        model = (model or "auto").strip()
        if model in AUTO_MODELS:
            if lang is None:
                return Plan(None, None, route=True)
            return Plan(self.by_language.get(lang), lang)
        if model == self.base_name:
            if lang is not None and lang not in WHISPER_LANGUAGES:
                raise RequestError(f"the base model {model} has no token for {lang!r}; use model "
                                   f"{self.by_language[lang]!r} or auto", param="language", code="unsupported_language")
            return Plan(None, lang)
        if model in self.adapter_languages:
            own = self.adapter_languages[model]
            if lang is not None and lang != own and lang not in WHISPER_LANGUAGES:
                raise RequestError(f"adapter {model} cannot transcribe {lang!r} (another adapter's new language)",
                                   param="language", code="unsupported_language")
            return Plan(model, lang or own)
        raise RequestError(f"unknown model {model!r}; GET /v1/models lists them: auto, {self.base_name}, "
                           f"{', '.join(self.adapter_languages)}", status=404, param="model", code="model_not_found")

    # -- model calls (one worker thread) ---------------------------------------------------------------

    def route(self, audios: Sequence[np.ndarray], plans: Sequence[Plan]) -> list[Plan]:
        """Resolve plans still missing a language: the router's (or, with no router, Whisper's own) choice of
        adapter and language for ``route`` plans; Whisper's detected language for the base model's plans."""
        with self.multi.using(None):
            layers = self.router.feature_layers(self.whisper) if self.router is not None else None
            cf = clip_features(self.whisper, audios, batch_size=max(1, self.options.batch_size), layers=layers)
        if self.router is not None:
            routed = self.router.decide(cf, self.adapter_languages)
        else:
            routed = [whisper_decision(p, cf.codes, self.adapter_languages) for p in cf.whisper_probs]
        out = []
        for plan, d, wp in zip(plans, routed, cf.whisper_probs):
            if not plan.route:  # a fixed model (the base), language to detect: Whisper's own guess
                d = whisper_decision(wp, cf.codes, {})
                d = Decision(plan.adapter, d.language, d.probability, by="whisper")
            out.append(Resolved(d.adapter, d.language, timed=plan.timed, probability=d.probability, by=d.by))
        return out

    def transcribe(self, adapter: str | None, audios: Sequence[np.ndarray], languages: Sequence[str],
                   long_form: bool = False) -> list[list[Segment]]:
        """Decode with ``adapter`` (None: the bare base): short clips in one batch, or (``long_form``) each
        recording through the long-form path with real segment times (:mod:`dama.serve.transcription`)."""
        with self.multi.using(adapter):
            if long_form:
                return [transcribe_timed(self.whisper, a, lang, self.decode) for a, lang in zip(audios, languages)]
            return transcribe_segments(self.whisper, audios, languages, self.decode)

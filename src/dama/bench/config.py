"""The benchmark grid as a YAML file: methods x languages x training hours x seeds.

    model: whisper-base
    out: cpu-whisper-base            # results, report, plots; relative paths are relative to this file
    runs: cpu-whisper-base/runs      # optional: run folders shared with another grid (default OUT/runs)
    methods: [zero-shot, full, lora, dora, lora-fa, adalora, pissa, dama]
    languages:
      swahili: {train: swahili:train}          # val/test default to the corpus's own splits
      yoruba:  {train: yoruba:train, language: yo}
    hours: [0.5, all]                # "all" = the whole train split
    seeds: [0, 1]
    control: fleurs-control          # forgetting: WER on languages the model already knew
    control_per_language: 0          # > 0: only the first N control clips of each language
    speed: [results/method_speed_*.json]   # optional: methods timed side by side, for the time target
    train: {epochs: 5, batch_size: 8}   # any `dama train` option, as key: value
    method_args: {full: {lr: 1.0e-5}}   # per-method `dama train` options
    variants:                           # named variants of a method, listed in methods like one
      dama-no-bpp: {method: dama, no_bpp: true}
      dama-probed: {method: dama, allocation: "probe/{language}.json"}   # {language}: the language's name
    tune: {lr: [3.0e-4, 1.0e-3, 3.0e-3], methods: [dama, lora], seed: 0}   # optional, see below

A language Whisper has no token for (a recipe with ``language_name``, e.g. kinyarwanda) trains its new
token as `dama train` does by itself; its zero-shot cell decodes with an existing token instead, the
recipe's ``zero_shot_proxy`` (``zero_shot_proxy: CODE`` under the language overrides it): an untrained
token would measure nothing but noise.

``tune`` picks each listed method's learning rate on the validation split, so that no method is
judged at a rate that happens to suit another: per (language, hours, method) one candidate run per
rate at the tune seed (default: the first seed); once all of them have finished, the rate with the
lowest validation WER (``best_val_wer`` of the run's results.json, never the test split; ties: the
lower rate) is the method's, and only it runs the other seeds. A candidate at the method's own rate
(its ``lr`` option, else `dama train`'s default for it) is the method's plain run
(``swahili-0.5h-dama-s0``), so a tuned grid reuses an untuned grid's runs; the others are named
``swahili-0.5h-dama-lr-3e-4-s0`` (the name an ``lr`` variant of the ablation grid has too).

``quick()`` is the preset for a first look: one language, one seed, the smallest amount
of data, zero-shot/lora/dama only, and capped validation/test sets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from dama.errors import DamaError
from dama.train.config import train_option_names

# `dama train` options a grid may set, derived from TrainConfig and the method option dataclasses
# (plus device/threads/allocation flags); the grid owns --method/--data/--hours/--seed/--out.
TRAIN_OPTIONS = train_option_names()
QUICK_METHODS = ("zero-shot", "lora", "dama")
# Cold (empty model and encoder caches), 2-core CPU, idle: 20 min 56 s with all 50 control clips
# and all 46 Swahili validation clips encoded (measured); training is 2 x ~3.7 min, encoding and
# greedy decoding the rest. Hence 5 control clips per language and only the used validation clips.
QUICK_TEST_UTTS = 40
QUICK_VAL_UTTS = 10
QUICK_CONTROL_PER_LANGUAGE = 5
# Names that become part of a run folder's name (languages, methods, variants): a config is text anyone
# can hand over, and the grid deletes unfinished run folders, so a name must not be able to leave the
# runs folder ("../x"), name a hidden folder (".encoder-cache") or carry a separator or a space.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
TUNE_KEYS = ("lr", "methods", "seed")


def lr_label(rate: float) -> str:
    """A learning rate as it appears in a run name: 0.0003 -> "3e-4", 0.0025 -> "2.5e-4"... (short, and
    the spelling of the ablation grid's ``dama-lr-3e-3``, so its runs count as tune candidates)."""
    mantissa, exponent = f"{rate:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def check_name(value, what: str) -> str:
    """``value`` if it is safe as (part of) a folder name; else a DamaError naming ``what`` (the field)."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise DamaError(f"bench: {what} {value!r} is not a usable name: names become run folder names, so use "
                        "letters, digits and . _ + - only, starting with a letter or digit, without '..'")
    return value


@dataclass
class LanguageSpec:
    name: str  # label in the grid and the report, e.g. "swahili"
    train: str  # data spec, e.g. swahili:train
    val: str | None = None  # None: the corpus's val split; "none": no validation
    test: str | None = None
    language: str | None = None  # Whisper code; None: the data's own
    language_name: str | None = None  # for a language Whisper lacks
    zero_shot_proxy: str | None = None  # the token zero-shot decodes a new language with; None: the recipe's

    def __post_init__(self):
        check_name(self.name, "languages: the name")
        if not self.train:
            raise DamaError(f"bench language {self.name!r}: 'train' data spec is required")

    def new_language(self) -> str | None:
        """The name of this language when Whisper has no token for it (training adds one), else None:
        given as ``language_name``, or the recipe's when the config leaves the language to the data
        (as `dama train` does: with ``language: CODE`` alone the code is an existing Whisper token)."""
        if self.language_name:
            return self.language_name
        if self.language:
            return None
        from dama.data.recipes import new_language_of

        found = new_language_of(self.train)
        return found[1] if found else None

    def zero_shot_language(self) -> str | None:
        """The ``--language`` of this language's zero-shot run: its own code, or for a new language the
        existing token it is decoded with (``zero_shot_proxy``, else the recipe's; an error if neither)."""
        if not self.new_language():
            return self.language
        proxy = self.zero_shot_proxy
        if not proxy:
            from dama.data.recipes import RECIPES

            proxies = {getattr(RECIPES.get(p.strip().partition(":")[0]), "zero_shot_proxy", None)
                       for p in self.train.split(",") if p.strip()}
            proxy = proxies.pop() if len(proxies) == 1 else None
        if proxy:
            from dama.languages import resolve_language

            try:
                return resolve_language(proxy)
            except DamaError as e:
                raise DamaError(f"bench: languages.{self.name}.zero_shot_proxy: {e}") from None
        raise DamaError(f"bench: languages.{self.name}: Whisper has no token for {self.new_language()}, so its "
                        "zero-shot run needs an existing one to decode with: set zero_shot_proxy: CODE (e.g. the "
                        "closest language Whisper knows) under the language, or drop zero-shot from methods")


@dataclass
class TuneSpec:
    """Which methods get their learning rate chosen on the validation split, among which rates, at which
    seed (None: the grid's first). The other seeds run only at the chosen rate: the seeds measure
    training noise at one setting, not the search."""

    lr: list[float]
    methods: list[str]
    seed: int | None = None


@dataclass
class BenchConfig:
    out: Path
    methods: list[str]
    languages: list[LanguageSpec]
    hours: list[float | None] = field(default_factory=lambda: [None])  # None = whole train split
    seeds: list[int] = field(default_factory=lambda: [0])
    model: str = "whisper-base"
    data_root: str | None = None
    control: str | None = "fleurs-control"
    control_per_language: int = 0  # forgetting on the first N control clips of each language (0 = all)
    train: dict = field(default_factory=dict)
    method_args: dict[str, dict] = field(default_factory=dict)
    test_limit: int = 0
    data_seed: int = 0  # which clips make up an --hours subset; fixed so methods and seeds share data
    launcher: list[str] = field(default_factory=list)  # e.g. [accelerate, launch]
    executor: dict = field(default_factory=dict)  # job-engine resources for --executor (dama.bench.executors)
    n_boot: int = 2000
    variants: dict[str, dict] = field(default_factory=dict)  # name -> {method: BASE, option: value...}
    runs: Path | None = None  # run folders; another grid's, to share its finished runs (default OUT/runs)
    speed: list[Path] = field(default_factory=list)  # side-by-side timings (benchmarks/method_speed.py)
    tune: TuneSpec | None = None  # learning rates chosen on validation (see the module's docstring)

    @property
    def runs_dir(self) -> Path:
        return self.runs or self.out / "runs"

    @property
    def logs_dir(self) -> Path:
        """Per-run logs and settings, beside the run folders (so grids sharing runs share them too)."""
        return self.runs_dir.parent / "logs"

    def __post_init__(self):
        from dama.adapt import METHODS

        if not isinstance(self.methods, list) or not isinstance(self.variants, dict):
            raise DamaError("bench: methods is a list of names and variants a mapping of name to options")
        for name in self.variants:
            check_name(name, "variants: the name")
        for name in self.methods:
            check_name(name, "methods: the entry")
        for lang in self.languages:
            check_name(lang.name, "languages: the name")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise DamaError(f"bench: seeds: {s!r} is not a seed; seeds are whole numbers >= 0")
        for name, v in self.variants.items():
            if name in METHODS:
                raise DamaError(f"bench: variant {name!r} has the name of a method; call it e.g. {name}-ablation")
            if not isinstance(v, dict) or v.get("method") not in METHODS:
                raise DamaError(f"bench: variant {name!r} needs method: one of {', '.join(METHODS)}")
            if v["method"] == "zero-shot":
                raise DamaError(f"bench: variant {name!r}: zero-shot has no options to vary")
            _check_options({k: x for k, x in v.items() if k != "method"}, f"variants.{name}")
        bad = [m for m in self.methods if m not in METHODS and m not in self.variants]
        if bad:
            raise DamaError(f"bench: unknown method(s) {bad}; choose from {', '.join(METHODS)} "
                            "or name a variant under 'variants'")
        if not self.methods or not self.languages or not self.hours or not self.seeds:
            raise DamaError("bench: methods, languages, hours and seeds must each list at least one entry")
        if len(set(self.methods)) != len(self.methods) or len({lang.name for lang in self.languages}) != len(
                self.languages):
            raise DamaError("bench: methods and language names must be unique")
        for h in self.hours:
            if h is not None and not (isinstance(h, int | float) and h > 0 and math.isfinite(h)):
                raise DamaError(f"bench: hours must be positive or 'all', got {h}")
        _check_options(self.train, "train")
        for m, opts in self.method_args.items():
            if m not in self.methods:
                raise DamaError(f"bench: method_args for {m!r}, which is not in methods {self.methods}")
            _check_options(opts, f"method_args.{m}")
        if self.test_limit < 0 or self.control_per_language < 0 or self.n_boot < 100:
            raise DamaError("bench: test_limit and control_per_language must be >= 0, n_boot >= 100")
        if "zero-shot" in self.methods:
            for lang in self.languages:
                lang.zero_shot_language()  # a new language without a token to decode it with: say so now
        if self.tune is not None:
            self._check_tune()

    def _check_tune(self) -> None:
        """Every tuned method is in the grid, every rate a positive number, the seed one of the grid's,
        every language validated (the choice is made on validation), and no candidate name is taken."""
        t = self.tune
        if not isinstance(t.lr, list) or not t.lr:
            raise DamaError("bench: tune.lr lists the learning rates to try, e.g. [3.0e-4, 1.0e-3, 3.0e-3]")
        for x in t.lr:
            if isinstance(x, bool) or not isinstance(x, int | float) or not (x > 0 and math.isfinite(x)):
                raise DamaError(f"bench: tune.lr: {x!r} is not a learning rate (a positive number, e.g. 3.0e-4)")
        if len({lr_label(x) for x in t.lr}) != len(t.lr):
            raise DamaError(f"bench: tune.lr lists a rate twice (or two too close to tell apart in a run name): "
                            f"{t.lr}")
        if not isinstance(t.methods, list) or not t.methods:
            raise DamaError("bench: tune.methods lists the methods whose learning rate is chosen, e.g. [dama, lora]")
        for m in t.methods:
            if m not in self.methods or m == "zero-shot":
                raise DamaError(f"bench: tune.methods: {m!r} is not a trained method of this grid "
                                f"(methods: {self.methods})")
        if len(set(t.methods)) != len(t.methods):
            raise DamaError(f"bench: tune.methods lists a method twice: {t.methods}")
        if t.seed is None:
            t.seed = self.seeds[0]
        if t.seed not in self.seeds or isinstance(t.seed, bool):
            raise DamaError(f"bench: tune.seed {t.seed!r} is not one of the grid's seeds {self.seeds}")
        for lang in self.languages:
            if lang.val == "none":
                raise DamaError(f"bench: tune: languages.{lang.name} has val: none, but the learning rate is "
                                "chosen on the validation split; give it one or leave val out (the corpus's own)")
        for m in t.methods:
            for x in t.lr:
                name = self.candidate_method_name(m, x)
                if name != m and name in self.methods:
                    raise DamaError(f"bench: tune: the candidate of {m} at lr {x:g} is named {name}, like an entry "
                                    f"of methods; drop that entry (the tuned grid runs it anyway) or that rate")

    def own_rate(self, name: str) -> float:
        """The learning rate a method's plain run trains at: its ``lr`` option, else what `dama train` uses
        without --lr: the method's ``default_lr`` (the one place that default is set; TrainConfig.learning_rate
        falls back to it too). Read from the method class, so that reading a grid never imports the trainer."""
        lr = self.options(name).get("lr")
        if lr is not None:
            return float(lr)
        from dama.adapt import METHODS

        return float(METHODS[self.base_method(name)].default_lr)

    def is_own_rate(self, name: str, rate: float) -> bool:
        """Whether ``rate`` is the method's own rate, so that its candidate is the method's plain run."""
        return math.isclose(rate, self.own_rate(name), rel_tol=1e-9)

    def candidate_method_name(self, name: str, rate: float) -> str:
        """The method part of a candidate's run name: the method's own at its own rate, else ``NAME-lr-3e-4``."""
        return name if self.is_own_rate(name, rate) else f"{name}-lr-{lr_label(rate)}"

    def is_tuned(self, name: str) -> bool:
        return self.tune is not None and name in self.tune.methods

    def base_method(self, name: str) -> str:
        """The `dama train --method` behind a method or variant name."""
        return self.variants[name]["method"] if name in self.variants else name

    def options(self, name: str) -> dict:
        """`dama train` options of a method or variant: shared, then the variant's, then method_args."""
        own = {k: v for k, v in self.variants.get(name, {}).items() if k != "method"}
        return {**self.train, **own, **self.method_args.get(name, {})}

    def quick(self) -> BenchConfig:
        """One language, one seed, the smallest amount, fewer methods, capped val/test; own folder."""
        methods = [m for m in self.methods if m in QUICK_METHODS] or self.methods[:2]
        amounts = [h for h in self.hours if h is not None]
        train = {**self.train, "val_max_utts": min(self.train.get("val_max_utts") or QUICK_VAL_UTTS, QUICK_VAL_UTTS)}
        return replace(self, out=self.out.with_name(self.out.name + "-quick"), runs=None, methods=methods,
                       languages=self.languages[:1], hours=[min(amounts)] if amounts else [None],
                       seeds=self.seeds[:1], train=train,
                       test_limit=min(self.test_limit or QUICK_TEST_UTTS, QUICK_TEST_UTTS),
                       control_per_language=min(self.control_per_language or QUICK_CONTROL_PER_LANGUAGE,
                                                QUICK_CONTROL_PER_LANGUAGE),
                       method_args={k: v for k, v in self.method_args.items() if k in methods},
                       tune=None)  # a first look trains at the methods' own rates


def _check_options(opts: dict, where: str) -> None:
    if not isinstance(opts, dict):
        raise DamaError(f"bench: {where} must be a mapping of `dama train` options")
    bad = sorted(set(opts) - TRAIN_OPTIONS)
    if bad:
        raise DamaError(f"bench: {where} has unknown option(s) {bad}; allowed: {sorted(TRAIN_OPTIONS)}")
    for k, v in opts.items():
        try:
            per_language(v, "x")
        except (KeyError, IndexError, ValueError):
            raise DamaError(f"bench: {where}.{k} = {v!r}: the only placeholder allowed is {{language}}") from None


def per_language(value, language: str):
    """An option value with ``{language}`` filled in (e.g. a probe JSON per target language)."""
    return value.format(language=language) if isinstance(value, str) else value


def _hours(v) -> float | None:
    if v in ("all", "full", None):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DamaError(f"bench: hours entries are numbers or 'all', got {v!r}") from None


def load_config(path: str | Path) -> BenchConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DamaError(f"{path}: benchmark config not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DamaError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise DamaError(f"{path}: expected a mapping at the top level")
    known = set(BenchConfig.__dataclass_fields__)
    bad = sorted(set(raw) - known)
    if bad:
        raise DamaError(f"{path}: unknown key(s) {bad}; allowed: {sorted(known)}")
    for key in ("out", "methods", "languages"):
        if key not in raw:
            raise DamaError(f"{path}: missing required key {key!r}")
    langs = raw.pop("languages")
    if not isinstance(langs, dict):
        raise DamaError(f"{path}: 'languages' maps a name to {{train: SPEC, ...}}")
    try:
        raw["languages"] = [LanguageSpec(name=str(k), **(v if isinstance(v, dict) else {"train": v}))
                            for k, v in langs.items()]
    except TypeError as e:
        raise DamaError(f"{path}: languages: {e}") from None
    except DamaError as e:
        raise _in_file(path, e) from None
    for key in ("out", "runs"):
        if raw.get(key) is not None:
            p = Path(raw[key]).expanduser()
            raw[key] = p if p.is_absolute() else (path.parent / p).resolve()
    hours = raw.get("hours", ["all"])
    raw["hours"] = [_hours(h) for h in (hours if isinstance(hours, list) else [hours])]
    if "seeds" in raw and not isinstance(raw["seeds"], list):
        raw["seeds"] = [raw["seeds"]]
    raw["method_args"] = raw.get("method_args") or {}
    raw["variants"] = raw.get("variants") or {}
    for opts in [raw.get("train") or {}, *raw["method_args"].values(), *raw["variants"].values()]:
        if isinstance(opts, dict) and isinstance(opts.get("allocation"), str):  # a probe JSON beside the config
            a = Path(opts["allocation"]).expanduser()
            opts["allocation"] = str(a if a.is_absolute() else (path.parent / a).resolve())
    raw["train"] = raw.get("train") or {}
    raw["speed"] = _speed_files(path, raw.get("speed") or [])
    if raw.get("tune") is not None:
        raw["tune"] = _tune(path, raw["tune"])
    try:
        return BenchConfig(**raw)
    except DamaError as e:
        raise _in_file(path, e) from None


def _tune(path: Path, raw) -> TuneSpec:
    """The ``tune`` mapping; rates may be written 3e-4 (which YAML reads as text) or 3.0e-4."""
    if not isinstance(raw, dict) or "lr" not in raw or "methods" not in raw:
        raise DamaError(f"{path}: tune: expected a mapping like {{lr: [3.0e-4, 1.0e-3], methods: [dama, lora], "
                        "seed: 0}")
    bad = sorted(set(raw) - set(TUNE_KEYS))
    if bad:
        raise DamaError(f"{path}: tune: unknown key(s) {bad}; allowed: {list(TUNE_KEYS)}")
    rates = raw["lr"] if isinstance(raw["lr"], list) else [raw["lr"]]
    out = []
    for x in rates:
        try:
            out.append(float(x) if isinstance(x, str) else x)
        except ValueError:
            raise DamaError(f"{path}: tune.lr: {x!r} is not a number") from None
    methods = raw["methods"] if isinstance(raw["methods"], list) else [raw["methods"]]
    return TuneSpec(lr=out, methods=methods, seed=raw.get("seed"))


def _in_file(path: Path, e: DamaError) -> DamaError:
    """The same error, naming the config file it comes from (so the user knows what to edit)."""
    return type(e)(f"{path}: {str(e).removeprefix('bench: ')}")


def _speed_files(config: Path, patterns) -> list[Path]:
    """Side-by-side timing files: paths or globs relative to the config. A glob may match nothing yet
    (the timing not run on this machine); a plain path that does not exist is a typo, and an error."""
    import glob

    out: list[Path] = []
    for pat in patterns if isinstance(patterns, list) else [patterns]:
        full = Path(str(pat)).expanduser()
        full = full if full.is_absolute() else config.parent / full
        if glob.has_magic(str(pat)):
            out += [Path(p).resolve() for p in sorted(glob.glob(str(full)))]
        elif full.is_file():
            out.append(full.resolve())
        else:
            raise DamaError(f"{config}: speed: {full} not found (a results file of benchmarks/method_speed.py)")
    return out


__all__ = ["BenchConfig", "LanguageSpec", "NAME_PATTERN", "QUICK_METHODS", "TRAIN_OPTIONS", "TuneSpec", "check_name",
           "load_config", "lr_label", "per_language"]

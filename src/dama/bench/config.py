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

``quick()`` is the preset for a first look: one language, one seed, the smallest amount
of data, zero-shot/lora/dama only, and capped validation/test sets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from dama.errors import DamaError

# `dama train` options a grid may set (key -> flag); the grid owns --method/--data/--hours/--seed/--out.
TRAIN_OPTIONS = {
    "epochs", "batch_size", "grad_accum", "lr", "warmup", "schedule", "precision", "val_max_utts", "patience",
    "save_every", "low_memory", "device", "threads", "rank", "alpha_ratio", "r_high", "r_low", "ranks",
    "segments", "uniform_rank", "random_init", "no_bpp", "cache_dir", "allocation", "allocation_measure",
}
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

    def __post_init__(self):
        check_name(self.name, "languages: the name")
        if not self.train:
            raise DamaError(f"bench language {self.name!r}: 'train' data spec is required")


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
    n_boot: int = 2000
    variants: dict[str, dict] = field(default_factory=dict)  # name -> {method: BASE, option: value...}
    runs: Path | None = None  # run folders; another grid's, to share its finished runs (default OUT/runs)
    speed: list[Path] = field(default_factory=list)  # side-by-side timings (benchmarks/method_speed.py)

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
                       method_args={k: v for k, v in self.method_args.items() if k in methods})


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
    try:
        return BenchConfig(**raw)
    except DamaError as e:
        raise _in_file(path, e) from None


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


__all__ = ["BenchConfig", "LanguageSpec", "NAME_PATTERN", "QUICK_METHODS", "TRAIN_OPTIONS", "check_name", "load_config",
           "per_language"]

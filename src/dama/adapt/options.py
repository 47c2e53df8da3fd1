"""The settings of the adaptation methods a user chooses, and how options become a method's config.

The fields here are the one source of those settings' defaults and help: the method configs
inherit them (``LoraMethod(RankOptions, MethodConfig)``, ``DamaMethod(DamaOptions, MethodConfig)``,
``MethodConfig(CommonOptions)``), ``dama train`` derives its method flags from them (``--rank``,
``--alpha-ratio``, ``--r-high``, ``--r-low``, ``--ranks``, ``--segments``, ``--uniform-rank``,
``--random-init``, ``--no-bpp``), and ``dama bench`` accepts the same names as options. This
module imports no torch, so ``dama train --help`` shows the defaults without loading it.

Field metadata (as :mod:`dama.train.config`): ``help``; ``flag`` where the flag is not
``--field-name``; ``negate`` for a switch that turns a setting that is on by default off
(``--no-bpp`` -> ``bpp=False``); ``text`` for a flag given as text the options parse
(``--segments L_EARLY,L_LATE`` sets ``l_early`` and ``l_late``); ``cli=False`` for a field no
flag sets by itself (``l_late``).

An *option* is named by its flag without dashes (``rank``, ``no_bpp``, ``segments``), the way
``argparse`` stores it and a bench config spells it; :func:`method_settings` turns options into a
method's config fields.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from dama.errors import DamaError

if TYPE_CHECKING:
    from dama.adapt.base import MethodConfig

ALLOCATION_MEASURES = ("lid", "variance", "fisher")  # the profiles dama.adapt.allocation can allocate from
# options that set DAMA's per-layer ranks or ablations: an error for a method without those fields
DAMA_OPTIONS = ("ranks", "segments", "allocation", "uniform_rank", "random_init", "no_bpp")


def option(default, help: str, **meta) -> Field:
    """A field with its help text (and optional ``flag``, ``negate``, ``cli=False``) as metadata."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class CommonOptions:
    """What every method has."""

    alpha_ratio: float = option(2.0, "lora_alpha = ratio x rank: the same LoRA scaling alpha/r on every layer")


@dataclass
class RankOptions:
    """The methods with one rank on every layer: lora, dora, lora-fa, pissa."""

    r: int = option(64, "rank of uniform methods (lora, dora, lora-fa, pissa)", flag="--rank")


@dataclass
class DamaOptions:
    """DAMA's depth-aware ranks, segments and ablations (docs/method-notes.md §2-3)."""

    r_high: int = option(32, "dama: rank at the first and last layer")
    r_low: int = option(8, "dama: rank in the middle")
    early_frac: float = option(0.3, "dama: the early segment ends at this fraction of the decoder's layers",
                               cli=False)
    late_frac: float = option(0.7, "dama: the late segment starts at this fraction of the decoder's layers",
                              cli=False)
    # explicit segment boundaries (1-based), override the fractions
    l_early: int | None = option(None, "dama: L_EARLY,L_LATE segment boundaries (1-based)", flag="--segments",
                                 text=True)
    l_late: int | None = option(None, "dama: first layer of the late segment (1-based); see l_early", cli=False)
    # explicit r(l) per decoder layer, overrides r_high/r_low
    ranks: tuple[int, ...] | None = option(None, "dama: explicit per-layer ranks, e.g. 32,8,8,8,8,32")
    uniform: bool = option(False, "dama ablation: one rank everywhere", flag="--uniform-rank")
    svd_init: bool = option(True, "dama ablation: no SVD-tail init", flag="--random-init", negate=True)
    bpp: bool = option(True, "dama ablation: middle-layer A trains", flag="--no-bpp", negate=True)


# the classes whose fields are `dama train` flags, in --help order
OPTION_CLASSES = (RankOptions, CommonOptions, DamaOptions)


def flag_of(f: Field) -> str:
    """The command-line flag of a dataclass field: its ``flag`` metadata, else --field-name."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def option_name(f: Field) -> str:
    """A field's option name: its flag without dashes (``--no-bpp`` -> ``no_bpp``, ``--warmup`` -> ``warmup``)."""
    return flag_of(f)[2:].replace("-", "_")


def method_option_fields() -> list[Field]:
    """The method fields that are options, in --help order."""
    return [f for cls in OPTION_CLASSES for f in fields(cls) if f.metadata.get("cli", True)]


def method_option_names() -> set[str]:
    """Every method option `dama train` takes: the fields' and ``allocation``/``allocation_measure``."""
    return {option_name(f) for f in method_option_fields()} | {"allocation", "allocation_measure"}


def option_default(name: str):
    """The default of a field option (``option_default("r_high") == 32``)."""
    return next(f.default for f in method_option_fields() if option_name(f) == name)


def int_list(text: str | list | tuple) -> tuple[int, ...]:
    """``"32,8,8"`` (or a list) -> ``(32, 8, 8)``; anything else is a clear error."""
    if isinstance(text, list | tuple):
        text = ",".join(map(str, text))
    try:
        return tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise DamaError(f"expected comma-separated integers, got {text!r}") from None


def _fields_of(name: str) -> tuple[str, ...]:
    """The config fields an option sets."""
    if name == "segments":
        return ("l_early", "l_late")
    if name == "allocation":
        return ("ranks", "l_early", "l_late")
    return tuple(f.name for f in method_option_fields() if option_name(f) == name)


def method_settings(method: str, **options) -> dict:
    """Options (by option name; None or False: not given) -> the keyword arguments of ``method``'s config.

    Only what was given goes in, so the config's own defaults apply to the rest. ``--rank`` for a
    method without a rank and the DAMA options (:data:`DAMA_OPTIONS`) for one without DAMA's fields are
    errors; the other options a method lacks (``r_high`` for lora) are ignored, so one set of options
    can serve every method of a grid. ``allocation`` (a ``dama probe`` JSON, read with
    ``allocation_measure`` and the given or default ``r_high``/``r_low``) sets ranks and segments.
    """
    from dama.adapt import METHODS

    cls = METHODS.get(method)
    if cls is None:
        raise DamaError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    unknown = sorted(set(options) - method_option_names())
    if unknown:
        raise DamaError(f"unknown method option(s) {unknown}; the options are {sorted(method_option_names())}")
    have = set(cls.__dataclass_fields__)
    given = {k: v for k, v in options.items() if v is not None and v is not False and v != ""}
    if "rank" in given and "r" not in have:
        raise DamaError(f"--rank does not apply to {method}")
    misfit = [k for k in given if k in DAMA_OPTIONS and not set(_fields_of(k)) <= have]
    if misfit:
        flags = ", ".join("--" + k.replace("_", "-") for k in misfit)
        verb = "does" if len(misfit) == 1 else "do"
        raise DamaError(f"{flags} {verb} not apply to --method {method}: the rank layout options apply to "
                        "--method dama only (and --r-high/--r-low/--ranks/--segments/--allocation also to adalora, "
                        "whose budget follows them)")
    out = {}
    if "allocation" in given:
        if "ranks" in given or "segments" in given:
            raise DamaError("--allocation sets ranks and segments; do not also give --ranks/--segments")
        from dama.adapt.allocation import allocation_from_file

        a = allocation_from_file(Path(given["allocation"]), given.get("allocation_measure", ALLOCATION_MEASURES[0]),
                                 given.get("r_high", option_default("r_high")),
                                 given.get("r_low", option_default("r_low")))
        out.update(ranks=tuple(a.ranks), l_early=a.l_early, l_late=a.l_late)
    for f in method_option_fields():
        name = option_name(f)
        if name not in given or f.name not in have:
            continue
        value = given[name]
        if name == "segments":
            seg = int_list(value)
            if len(seg) != 2:
                raise DamaError("--segments takes L_EARLY,L_LATE (1-based layer indices)")
            out.update(l_early=seg[0], l_late=seg[1])
        elif f.name == "ranks":
            out["ranks"] = int_list(value)
        else:
            out[f.name] = not value if f.metadata.get("negate") else value
    return out


def method_config_from_options(method: str, **options) -> MethodConfig:
    """``method``'s config from options, as `dama train` builds it (see :func:`method_settings`)."""
    from dama.adapt import make_method

    return make_method(method, **method_settings(method, **options))


__all__ = ["ALLOCATION_MEASURES", "CommonOptions", "DAMA_OPTIONS", "DamaOptions", "OPTION_CLASSES", "RankOptions",
           "flag_of", "int_list", "method_config_from_options", "method_option_fields", "method_option_names",
           "method_settings", "option", "option_default", "option_name"]

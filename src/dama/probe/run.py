"""`dama probe`: every measure on every layer of both stacks, as JSON, a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dama.adapt.allocation import allocate
from dama.data.manifest import Manifest
from dama.errors import DamaError
from dama.models.load import Whisper
from dama.probe.features import layer_features
from dama.probe.measures import gradient_importance, language_variance, lid_probe, linear_cka


def run_probe(w: Whisper, m: Manifest, target: Manifest | None = None, mode: str = "prompt",
              train_per_language: int = 5, dims: int = 8, repeats: int = 20, fisher_clips: int = 32,
              cache_dir: str | Path | None = None, synthetic: list[str] | None = None, log=print) -> dict:
    """Measure ``m`` (clips in >= 2 languages) and, with ``target``, gradient importance on it."""
    if not hasattr(w.model, "model") or not hasattr(w.model.model, "decoder"):
        raise DamaError(f"{w.name}: the probe needs an encoder-decoder Whisper model (no decoder found)")
    feats = layer_features(w, m, mode=mode, cache_dir=cache_dir, log=log)
    counts = {lang: feats.languages.count(lang) for lang in sorted(set(feats.languages))}
    if synthetic is None:  # recipes mark synthetic clips by their speaker (udhr_synth: espeak-ng:<voice>)
        synthetic = sorted({u.language for u in m if (u.speaker or "").startswith("espeak-ng")})
    pairs = parallel_pairs(feats.ids, feats.languages)
    out = {"model": w.name, "data": m.name, "mode": mode, "languages": counts, "synthetic": synthetic,
           "parallel_pairs": {f"{k[0]}-{k[1]}": len(v[0]) for k, v in pairs.items()},
           "settings": {"train_per_language": train_per_language, "dims": dims, "repeats": repeats}, "stacks": {}}
    for stack in ("encoder", "decoder"):
        x = feats.stack(stack)
        layers = []
        for i in range(x.shape[0]):
            layers.append({"layer": i, "lid": lid_probe(x[i], feats.languages, train_per_language, dims, repeats),
                           "language_variance": language_variance(x[i], feats.languages)})
            if pairs:
                cka = float(np.mean([linear_cka(x[i][a], x[i][b]) for a, b in pairs.values()]))
                layers[-1]["parallel_cka"] = None if np.isnan(cka) else cka
        out["stacks"][stack] = {"layers": layers}
    if target is not None:
        imp = gradient_importance(w, target, max_clips=fisher_clips, log=log)
        out["target"] = {"data": target.name, "clips": imp["decoder"]["clips"]}
        for stack in ("encoder", "decoder"):
            for layer, f, pp in zip(out["stacks"][stack]["layers"][1:], imp[stack]["fisher"], imp[stack]["per_param"]):
                layer["fisher"], layer["fisher_per_param"] = f, pp
    dec = out["stacks"]["decoder"]["layers"][1:]
    out["allocations"] = {"lid": allocate([x["lid"]["mean"] for x in dec], measure="lid").to_dict(),
                          "variance": allocate([x["language_variance"] for x in dec], measure="variance").to_dict()}
    if target is not None:
        out["allocations"]["fisher"] = allocate([x["fisher"] for x in dec], measure="fisher").to_dict()
    return out


def parallel_pairs(ids: list[str], langs: list[str], min_items: int = 4) -> dict:
    """Rows with the same content in two languages, from ids ``<key>-<language>`` (udhr_synth's
    ``udhr-07-sw``): {(lang_a, lang_b): (rows_a, rows_b)} for pairs sharing >= ``min_items`` keys."""
    by_lang: dict[str, dict[str, int]] = {}
    for row, (uid, lang) in enumerate(zip(ids, langs)):
        if uid.endswith(f"-{lang}"):
            by_lang.setdefault(lang, {})[uid[: -len(lang) - 1]] = row
    out = {}
    names = sorted(by_lang)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            keys = sorted(set(by_lang[a]) & set(by_lang[b]))
            if len(keys) >= min_items:
                out[(a, b)] = ([by_lang[a][k] for k in keys], [by_lang[b][k] for k in keys])
    return out


def table(res: dict) -> str:
    lines = []
    for stack in ("encoder", "decoder"):
        lines.append(f"{stack} ({res['mode'] if stack == 'decoder' else 'audio frames'}):")
        lines.append("  layer  LID acc (± sd)   lang. variance   parallel CKA   fisher/param")
        for x in res["stacks"][stack]["layers"]:
            f, c = x.get("fisher_per_param"), x.get("parallel_cka")
            lines.append(f"  {x['layer']:>5}  {x['lid']['mean']:.3f} ± {x['lid']['std']:.3f}    "
                         f"{x['language_variance']:.4f}           {'  –  ' if c is None else f'{c:.3f}'}          "
                         f"{'' if f is None else f'{f:.3e}'}")
    chance = res["stacks"]["decoder"]["layers"][0]["lid"]["chance"]
    lines.append(f"chance accuracy {chance:.3f}; languages {res['languages']}"
                 + (f"; synthetic speech: {', '.join(res['synthetic'])}" if res["synthetic"] else ""))
    for name, a in res["allocations"].items():
        lines.append(f"allocation from {name}: ranks {a['ranks']}  segments {a['l_early']},{a['l_late']}  "
                     f"(dama train {a['train_flags']})")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, stack in zip(axes, ("encoder", "decoder")):
        layers = res["stacks"][stack]["layers"]
        xs = [x["layer"] for x in layers]
        mean = np.array([x["lid"]["mean"] for x in layers])
        sd = np.array([x["lid"]["std"] for x in layers])
        ax.plot(xs, mean, "o-", label="LID probe accuracy")
        ax.fill_between(xs, mean - sd, mean + sd, alpha=0.2)
        ax.plot(xs, [x["language_variance"] for x in layers], "s--", label="between-language variance share")
        if "parallel_cka" in layers[0]:
            ax.plot(xs, [np.nan if x["parallel_cka"] is None else x["parallel_cka"] for x in layers], "d-.",
                    label="CKA across languages (parallel)")
        if "fisher" in layers[-1]:
            f = np.array([x.get("fisher", np.nan) for x in layers], dtype=float)
            ax.plot(xs, f / np.nanmax(f), "^:", label="gradient importance (scaled)")
        ax.axhline(layers[0]["lid"]["chance"], color="gray", lw=0.8, ls=":")
        ax.set(title=f"{stack} ({res['mode']})" if stack == "decoder" else "encoder", xlabel="layer (0 = embeddings)",
               ylim=(0, 1.05))
        if stack == "decoder":
            a = res["allocations"]["lid"]
            ax2 = ax.twinx()
            ax2.bar(range(1, len(a["ranks"]) + 1), a["ranks"], alpha=0.15, color="tab:green")
            ax2.set_ylabel("DAMA rank (from LID)")
            for b in (a["l_early"] + 0.5, a["l_late"] - 0.5):
                ax.axvline(b, color="tab:green", ls="--", lw=0.8)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_probe(res: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return out, plot(res, out.with_suffix(".png"))


__all__ = ["parallel_pairs", "plot", "run_probe", "table", "write_probe"]

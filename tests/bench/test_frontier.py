"""The report of a tuned grid (issue 26): validation WER per rate, chosen settings, the accuracy–forgetting
frontier, whether DAMA is on it, the goal per language, and one colour per method in every plot."""

from __future__ import annotations

import pytest

from dama.bench.report import (
    METHOD_COLOURS,
    collect,
    frontier_lines,
    goal_verdicts,
    method_colours,
    pareto,
    plots,
    write_report,
)
from tests.bench.tunegrid import TUNED, finish, write_config


def test_pareto_keeps_the_points_nothing_beats_on_both_axes():
    pts = [(0.50, 0.10), (0.40, 0.20), (0.45, 0.30), (0.60, 0.05), (0.40, 0.25), (0.70, None), (0.30, 0.60)]
    assert pareto(pts) == [True, True, False, True, False, False, True]
    # (0.45, 0.30) is beaten by (0.40, 0.20); (0.40, 0.25) ties on WER and forgets more; no forgetting: not on it
    assert pareto([(0.5, 0.1), (0.5, 0.1)]) == [True, True]  # equal points: neither beats the other
    assert pareto([]) == []


def group(method, wer, forgetting, seeds=2, lr=1e-3, hours="0.5h", language="sw"):
    return {"language": language, "hours": hours, "method": method, "wer": wer, "forgetting": forgetting,
            "seeds": seeds, "lr": lr}


def data(dama, lora, seeds=(0, 1)):
    return {"languages": ["sw"], "hours": ["0.5h"], "seeds": list(seeds), "tuning": [],
            "tune": {"lr": [3e-4, 1e-3, 3e-3], "methods": ["dama", "lora"], "seed": 0},
            "summary": [group("zero-shot", 0.9, 0.0, 1)] + [g for g in (dama, lora) if g]}


@pytest.mark.parametrize("dama,lora,verdict", [
    (group("dama", 0.505, 0.02, lr=3e-3), group("lora", 0.50, 0.05), "**met** — DAMA lr 3e-3 and LoRA lr 1e-3"),
    (group("dama", 0.52, 0.01), group("lora", 0.50, 0.05), "**not met**"),  # 2 points behind
    (group("dama", 0.50, 0.03), group("lora", 0.50, 0.05), "**not met**"),  # forgets more than half
    (group("dama", 0.45, 0.00), group("lora", 0.50, -0.01), "**met**"),  # LoRA forgets nothing: DAMA neither
    (group("dama", 0.45, 0.01), group("lora", 0.50, -0.01), "**not met**"),
])
def test_the_goal_per_language(dama, lora, verdict):
    (line,) = goal_verdicts(data(dama, lora))
    assert line.startswith("sw, 0.5h: " + verdict)


def test_the_goal_line_says_what_it_measured_and_when_it_is_provisional():
    (line,) = goal_verdicts(data(group("dama", 0.505, 0.02, lr=3e-3), group("lora", 0.50, 0.05, seeds=1)))
    assert line == ("sw, 0.5h: **met** (provisional: LoRA over 1 of 2 seeds) — DAMA lr 3e-3 and LoRA lr 1e-3, each "
                    "chosen on validation: test WER 0.505 vs 0.500, DAMA +0.5 points (within 1); forgetting on all "
                    "control clips +2.0 vs +5.0 points (at most half of LoRA's: ≤ +2.5)")


def test_the_goal_waits_for_both_choices():
    d = data(group("dama", 0.5, 0.01), None)
    d["tuning"] = [{"language": "sw", "hours": "0.5h", "method": "lora", "chosen": None,
                    "candidates": [{"lr": 3e-4, "val_wer": 0.5}, {"lr": 1e-3, "val_wer": None},
                                   {"lr": 3e-3, "val_wer": None}]}]
    assert goal_verdicts(d) == ["sw, 0.5h: **not yet run** (LoRA 1 of 3 candidates finished)"]
    d["tune"]["methods"] = ["dama"]
    assert goal_verdicts(d)[0].startswith("not evaluated")


def point(method, lr_label, wer, forgetting, frontier, chosen=True):
    return {"language": "sw", "hours": "0.5h", "method": method, "lr_label": lr_label, "wer": wer,
            "forgetting": forgetting, "frontier": frontier, "chosen": chosen, "tuned": True}


def test_is_dama_on_the_frontier_and_which_point():
    d = {"languages": ["sw", "yo"], "hours": ["0.5h"], "points": [
        point("dama", "1e-3", 0.55, 0.02, True, chosen=False), point("dama", "3e-3", 0.47, 0.17, False),
        point("lora", "1e-3", 0.46, 0.04, True), point("lora", "3e-3", 0.49, 0.56, False, chosen=False)]}
    lines = frontier_lines(d)
    assert lines[2] == "| sw | 0.5h | yes | lr 1e-3 | lr 3e-3: dominated by lora lr 1e-3 |"
    assert lines[3] == "| yo | 0.5h | not yet run | – | – |"
    d["points"][1]["frontier"] = True
    assert frontier_lines(d)[2] == "| sw | 0.5h | yes | lr 1e-3, lr 3e-3 (chosen) | lr 3e-3: on it |"


def test_one_colour_per_method_in_every_grid_and_every_plot(tmp_path, monkeypatch):
    a = method_colours(["zero-shot", "dama", "lora", "dama-no-bpp", "lora-lr-3e-3"])
    b = method_colours(["lora", "dora", "dama", "lora-lr-3e-3"])
    assert a["dama"] == b["dama"] == METHOD_COLOURS["dama"] and a["lora"] == b["lora"] == METHOD_COLOURS["lora"]
    assert len(set(a.values())) == len(a) and len(set(b.values())) == len(b)  # no two methods share one

    from dama.bench.report import figures as module

    figures = {}
    monkeypatch.setattr(module, "_save", lambda fig, path, made, layout=True: figures.setdefault(path.name, fig))
    cfg = tuned_grid(tmp_path)
    plots(collect(cfg), tmp_path / "plots")
    assert {"wer_vs_hours.png", "wer_vs_params.png", "frontier.png", "cost.png"} <= set(figures)
    from matplotlib.colors import to_hex

    def colours_of(fig) -> dict[str, set[str]]:
        """Method name -> the colours it is drawn in: lines and legend entries by label, bars by tick name."""
        out: dict[str, set[str]] = {}
        for ax in fig.axes:
            for line in ax.get_lines():
                if not line.get_label().startswith("_"):
                    out.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            for txt in ax.texts:  # point labels carry their method's colour
                out.setdefault(txt.get_text(), set()).add(to_hex(txt.get_color()))
            names = [t.get_text() for t in ax.get_xticklabels()]
            for bar, name in zip(ax.patches, names * 3):
                out.setdefault(name, set()).add(to_hex(bar.get_facecolor()))
        for leg in fig.legends:
            for h, t in zip(leg.legend_handles, leg.get_texts()):
                if hasattr(h, "get_color") and h.get_linestyle() in ("None", ""):
                    out.setdefault(t.get_text(), set()).add(to_hex(h.get_color()))
        return out

    for name, fig in figures.items():
        seen = colours_of(fig)
        for method in ("dama", "lora"):
            if method in seen:
                assert seen[method] == {METHOD_COLOURS[method]}, (name, method, seen[method])
    assert "dama" in colours_of(figures["frontier.png"]) and "dama" in colours_of(figures["wer_vs_params.png"])


def tuned_grid(tmp_path):
    """sw at 0.5 h: dama's candidates say 3e-3 on validation, lora's say 1e-3; seed 1 of both finished."""
    cfg = write_config(tmp_path)
    finish(cfg, "sw-zero-shot", val=None, test=0.9, control=0.2, lr=None)
    for name, val, test, control, lr in (
            ("sw-0.5h-dama-lr-3e-4-s0", 0.70, 0.3, 0.2, 3e-4),  # the best test WER: never chosen for it
            ("sw-0.5h-dama-s0", 0.60, 0.5, 0.2, 1e-3), ("sw-0.5h-dama-lr-3e-3-s0", 0.50, 0.5, 0.3, 3e-3),
            ("sw-0.5h-lora-lr-3e-4-s0", 0.60, 0.6, 0.2, 3e-4), ("sw-0.5h-lora-s0", 0.50, 0.5, 0.6, 1e-3),
            ("sw-0.5h-lora-lr-3e-3-s0", 0.55, 0.4, 0.9, 3e-3)):
        finish(cfg, name, val=val, test=test, control=control, lr=lr)
    finish(cfg, "sw-0.5h-dama-lr-3e-3-s1", val=0.50, test=0.5, control=0.3, lr=3e-3)
    finish(cfg, "sw-0.5h-lora-s1", val=0.50, test=0.5, control=0.6, lr=1e-3)
    return cfg


def test_a_tuned_grids_summary_holds_the_chosen_settings_and_every_rate_is_a_point(tmp_path):
    d = collect(tuned_grid(tmp_path))
    assert d["runs_finished"] == d["runs_total"] == 9
    g = {x["method"]: x for x in d["summary"]}
    assert g["dama"]["seeds"] == 2 and g["dama"]["lr"] == pytest.approx(3e-3)
    assert g["lora"]["seeds"] == 2 and g["lora"]["lr"] == pytest.approx(1e-3)
    assert g["dama"]["forgetting"] == pytest.approx(0.1) and g["lora"]["forgetting"] == pytest.approx(0.4)
    assert [(t["method"], t["chosen"]) for t in d["tuning"]] == [("dama", 3e-3), ("lora", 1e-3)]
    pts = {(p["method"], p["lr_label"]): p for p in d["points"]}
    assert set(pts) == {("dama", "3e-4"), ("dama", "1e-3"), ("dama", "3e-3"), ("lora", "3e-4"), ("lora", "1e-3"),
                        ("lora", "3e-3"), ("zero-shot", "-")}
    assert pts[("dama", "3e-3")]["chosen"] and pts[("dama", "3e-3")]["seeds"] == 2
    assert pts[("dama", "3e-4")]["chosen"] is False and pts[("dama", "3e-4")]["seeds"] == 1
    # (WER, forgetting): dama 3e-4 (0.3, 0.0) beats everything else but lora 3e-3? (0.4, 0.7): no, it beats it too
    assert [k for k, p in pts.items() if p["frontier"]] == [("dama", "3e-4")]
    assert {c["b"] for c in d["comparisons"]} == {"zero-shot", "lora"}  # chosen settings only

    cfg = tuned_grid(tmp_path / "again")
    report = write_report(cfg, collect(cfg), "dama bench --config bench.yaml").read_text()
    assert "| sw | 0.5h | dama | 0.700 | 0.600 | **0.500 ✓** | 3e-3 |" in report
    assert "| sw | 0.5h | lora | 0.600 | **0.500 ✓** | 0.550 | 1e-3 |" in report
    # equal WER, a quarter of LoRA's forgetting; DAMA's 3e-4 had the best test WER, which plays no part
    assert ("- sw, 0.5h: **met** — DAMA lr 3e-3 and LoRA lr 1e-3, each chosen on validation: test WER 0.500 vs "
            "0.500, DAMA +0.0 points (within 1); forgetting on all control clips +10.0 vs +40.0 points (at most "
            "half of LoRA's: ≤ +20.0)") in report
    assert "| sw | 0.5h | yes | lr 3e-4 | lr 3e-3: dominated by dama lr 3e-4, dama lr 1e-3 |" in report
    assert "| sw | 0.5h | dama | 3e-4 | candidate | 1 | 0.700 | 0.300 [" in report
    assert "\n| 0.5h | dama (lr 3e-3) | 2 (0.500, 0.500) |" in report  # the language section: the chosen rate
    assert "![frontier](plots/frontier.png)" in report and (cfg.out / "plots" / "frontier.png").is_file()


def test_an_untuned_grids_results_keep_their_shape(tmp_path):
    cfg = write_config(tmp_path, TUNED.replace("tune: {lr: [3.0e-4, 1.0e-3, 3e-3], methods: [dama, lora], seed: 0}\n",
                                               ""))
    finish(cfg, "sw-zero-shot", val=None, test=0.9, lr=None)
    finish(cfg, "sw-0.5h-dama-s0", val=0.5, test=0.5)
    d = collect(cfg)
    assert not {"tune", "tuning", "points", "zero_shot_tokens"} & set(d)
    assert list(d)[-1] == "speed"


def test_the_report_names_the_token_a_new_languages_zero_shot_decoded_with(tmp_path):
    import json

    from dama.data.recipes import RECIPES

    cfg = write_config(tmp_path, "out: g\nmethods: [zero-shot, dama]\nhours: [0.5]\ncontrol: fleurs-control\n"
                                 "n_boot: 100\nlanguages: {rw: {train: \"kinyarwanda:train\"}}\n")
    proxy = RECIPES["kinyarwanda"].zero_shot_proxy
    assert collect(cfg)["zero_shot_tokens"] == {"rw": {"token": proxy, "language": "Kinyarwanda",
                                                       "from_run": False}}
    finish(cfg, "rw-zero-shot", val=None, test=0.9, lr=None)
    (cfg.runs_dir / "rw-zero-shot" / "config.json").write_text(json.dumps({"language": "xx"}))
    d = collect(cfg)
    assert d["zero_shot_tokens"]["rw"] == {"token": "xx", "language": "Kinyarwanda", "from_run": True}  # as run
    report = write_report(cfg, d, "dama bench").read_text()
    assert "Zero-shot decoded with `<|xx|>`: Whisper has no Kinyarwanda token" in report

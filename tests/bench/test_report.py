"""The report's verdicts and target checks, on a hand-made summary."""

import pytest

from dama.bench.report import comparison_pairs, targets, verdicts


def group(method, wer, params, epoch_s, forgetting_en, hours="0.5h", lo=None, hi=None):
    return {"language": "sw", "hours": hours, "method": method, "wer": wer, "wer_lo": lo or wer - 0.02,
            "wer_hi": hi or wer + 0.02, "trainable_params": params, "epoch_seconds": epoch_s,
            "forgetting_en": forgetting_en}


def data(dama_wer, lora_wer, dora_wer=0.60):
    summary = [group("zero-shot", 0.90, 0, None, 0.0), group("dama", dama_wer, 1.2e6, 50.0, 0.01),
               group("lora", lora_wer, 5.1e6, 60.0, 0.03), group("dora", dora_wer, 5.2e6, 40.0, 0.02)]
    comps = [{"language": "sw", "hours": "0.5h", "a": "dama", "b": m, "diff": dama_wer - w,
              "p_bootstrap": 0.01 if abs(dama_wer - w) > 0.03 else 0.5}
             for m, w in (("zero-shot", 0.90), ("lora", lora_wer), ("dora", dora_wer))]
    return {"languages": ["sw"], "summary": summary, "comparisons": comps}


def test_dama_best_is_reported_with_significance():
    v = verdicts(data(0.45, 0.50))
    assert v[0].startswith("**sw, 0.5h: DAMA has the lowest WER (0.450)**")
    assert "better than: zero-shot, lora, dora" in v[0] and "worse than: none" in v[0]
    t = targets(data(0.45, 0.50))
    assert "DAMA lowest WER at 0.5 h on sw: reached" in t[0]
    assert any("≤ 30% of LoRA" in x and "reached (23.5%)" in x for x in t)
    assert any("forgetting ≤ LoRA's" in x and ": reached" in x for x in t)
    # neither dora (0.60) nor lora (0.50) has an interval overlapping DAMA's (0.43-0.47): no equal-quality peer
    assert any("no adapter method has a WER interval overlapping DAMA's" in x for x in t)


def test_forgetting_target_follows_the_paired_difference_over_common_seeds():
    d = data(0.45, 0.50)
    lora = next(c for c in d["comparisons"] if c["b"] == "lora")
    next(g for g in d["summary"] if g["method"] == "lora")["forgetting_en"] = 0.005
    # DAMA's average (two seeds) forgets more than LoRA's (seed 0 only), but over seed 0 DAMA forgets less
    lora.update(seeds=["0"], all_seeds=False,
                forgetting_en={"diff": -0.004, "ci": [-0.02, 0.01], "p_bootstrap": 0.6})
    t = next(x for x in targets(d) if "forgetting ≤ LoRA's" in x)
    assert ": reached (DAMA +1.0 vs LoRA +0.5" in t
    assert "paired over the English clips of seed 0, which both have finished, DAMA − LoRA -0.4" in t
    lora["forgetting_en"]["diff"] = 0.004
    assert ": not reached" in next(x for x in targets(d) if "forgetting ≤ LoRA's" in x)


def test_a_cell_where_only_dama_has_finished_claims_no_win():
    d = data(0.45, 0.50)
    d["summary"] += [group("zero-shot", 0.90, 0, None, 0.0, hours="all"),
                     group("dama", 0.40, 1.2e6, 70.0, 0.01, hours="all")]
    d["comparisons"].append({"language": "sw", "hours": "all", "a": "dama", "b": "zero-shot", "diff": -0.5,
                             "p_bootstrap": 0.0})
    v = verdicts(d)
    assert v[1].startswith("**sw, all: DAMA 0.400; no other adapted model has finished here yet**")
    assert "lowest" not in v[1]
    t = targets(d)
    assert any("(sw, 0.5h)" in x and "time per epoch" in x for x in t)
    assert not any("(sw, all)" in x and "time per epoch" in x for x in t)  # no adapter timed there yet


def test_dama_behind_is_said_with_the_gap():
    v = verdicts(data(0.50, 0.45))
    assert "lora has the lowest WER (0.450); DAMA 0.500 is 5.0 points behind, paired bootstrap p = 0.010" in v[0]
    assert "worse than: lora" in v[0]
    t = targets(data(0.50, 0.45, dora_wer=0.49))
    assert "DAMA lowest WER at 0.5 h on sw: not reached (DAMA 0.500, best lora 0.450)" in t[0]
    # dora is as good and faster per epoch
    assert any("equal quality" in x and "not reached (DAMA 50.0 s vs dora 40.0 s" in x for x in t)
    # with the epochs of each run known, a gap smaller than their spread is no verdict
    d = data(0.50, 0.45, dora_wer=0.49)
    by = {g["method"]: g for g in d["summary"]}
    by["dama"]["later_epoch_seconds"], by["dora"]["later_epoch_seconds"] = [30.0, 70.0, 50.0], [20.0, 60.0, 40.0]
    assert any("equal quality" in x and "within timing noise (DAMA 50.0 s vs dora 40.0 s, ±" in x for x in targets(d))
    by["dama"]["later_epoch_seconds"], by["dora"]["later_epoch_seconds"] = [49.0, 51.0, 50.0], [39.0, 41.0, 40.0]
    assert any("equal quality" in x and "not reached (DAMA 50.0 s vs dora 40.0 s, ±1.6 s" in x for x in targets(d))


def test_times_per_epoch_are_compared_only_on_one_machine():
    d = data(0.50, 0.45, dora_wer=0.49)
    by = {g["method"]: g for g in d["summary"]}
    for method, machine in (("dama", "cpu (AMD)"), ("dora", "cpu (Intel)"), ("lora", "cpu (AMD)")):
        by[method]["machines"] = [machine]
    t = [x for x in targets(d) if "time per epoch" in x]
    assert len(t) == 1 and "not comparable yet (DAMA was timed on cpu (AMD); dora only on other machines)" in t[0]
    by["lora"]["wer_hi"] = 0.49  # now lora (same machine, 60 s) is DAMA's equal-quality peer, dora still not
    t = [x for x in targets(d) if "time per epoch" in x][0]
    assert "reached (DAMA 50.0 s vs lora 60.0 s; timed on cpu (AMD)" in t
    assert "dora timed on other machines only, not compared)" in t
    # seeds timed on two machines: DAMA's Intel epochs are compared with dora's Intel epochs only
    by["dama"]["timing"] = {"cpu (AMD)": {"epoch_seconds": 50.0, "later_epoch_seconds": []},
                            "cpu (Intel)": {"epoch_seconds": 30.0, "later_epoch_seconds": []}}
    by["lora"]["wer_hi"] = 0.47
    t = [x for x in targets(d) if "time per epoch" in x][0]
    assert "reached (DAMA 30.0 s vs dora 40.0 s; timed on cpu (Intel)" in t


def test_a_grid_across_machines_names_each_runs_machine(tmp_path):
    from dama.bench.report import collect, write_report

    cfg = two_seed_grid(tmp_path, n_boot=100)
    amd = {"device_name": "AMD EPYC", "platform": "Linux-a"}
    fake_run(cfg, "sw-0.5h-dama-s0", [4] * 20, machine=amd)
    fake_run(cfg, "sw-0.5h-lora-s0", [5] * 20, machine={"platform": "Linux-a"})  # before names were recorded
    fake_run(cfg, "sw-0.5h-dama-s1", [4] * 20, machine={"device_name": "Intel Xeon", "platform": "Linux-b"})
    d = collect(cfg)
    run = {r["run"]: r["machine"] for r in d["runs"]}
    assert run["sw-0.5h-lora-s0"] == run["sw-0.5h-dama-s0"] == "cpu (AMD EPYC), 2 threads"  # same platform string
    assert run["sw-0.5h-dama-s1"] == "cpu (Intel Xeon), 2 threads" and run["sw-zero-shot"] == "not recorded"
    assert [(m["label"], m["runs"]) for m in d["machines"]] == [
        ("cpu (AMD EPYC), 2 threads", 2), ("cpu (Intel Xeon), 2 threads", 1), ("not recorded", 1)]
    g = {x["method"]: x for x in d["summary"]}
    assert g["dama"]["machines"] == ["cpu (AMD EPYC), 2 threads", "cpu (Intel Xeon), 2 threads"]
    assert {m: t["epoch_seconds"] for m, t in g["dama"]["timing"].items()} == {
        "cpu (AMD EPYC), 2 threads": 1.0, "cpu (Intel Xeon), 2 threads": 1.0}
    report = write_report(cfg, d, "dama bench").read_text()
    assert "A = cpu (AMD EPYC), 2 threads · Linux-a · torch 2.13.0 (2 runs); B = cpu (Intel Xeon)" in report
    assert "| sw-0.5h-dama-s1 | 0.500 | 0.400 | 0.080 | 100 | 1.0 (B) |" in report
    assert "| 1.0 (A+B) |" in report  # DAMA's row averages two machines' epochs, and says so


def test_dama_variants_are_not_competitors_in_the_targets():
    d = data(0.50, 0.55)
    d["summary"].append(group("dama-probe", 0.45, 1.0e6, 30.0, 0.0))
    d["variants"] = {"dama-probe": "dama"}
    t = targets(d)
    assert "DAMA lowest WER at 0.5 h on sw: reached (DAMA 0.500, best dama 0.500)" in t[0]
    assert not any("dama-probe" in x for x in t)
    assert "dama-probe has the lowest WER" in verdicts(d)[0]  # the verdicts still compare with it


def test_a_grid_of_dama_variants_alone_checks_no_competitive_targets():
    d = {"languages": ["sw"], "variants": {"dama-probe": "dama"}, "comparisons": [],
         "summary": [group("dama", 0.50, 1.2e6, 50.0, 0.0), group("dama-probe", 0.45, 1.0e6, 30.0, 0.0)]}
    assert targets(d) == []


def test_variants_are_tested_against_the_baselines_and_leave_dama_verdicts_alone():
    base = {"dama-lr": "dama", "dama-no-bpp": "dama", "lora-lr": "lora"}.get
    pairs = comparison_pairs(["zero-shot", "dama", "lora", "lora-lr", "dama-lr", "dama-no-bpp"],
                             lambda m: base(m) or m)
    assert pairs == [("dama", "zero-shot"), ("dama", "lora"), ("dama", "lora-lr"), ("dama", "dama-lr"),
                     ("dama", "dama-no-bpp"), ("dama-lr", "lora"), ("dama-lr", "lora-lr"),
                     ("dama-no-bpp", "lora"), ("dama-no-bpp", "lora-lr")]
    d = data(0.50, 0.45)
    before = verdicts(d)
    d["comparisons"].append({"language": "sw", "hours": "0.5h", "a": "dama-lr", "b": "lora", "diff": -0.2,
                             "p_bootstrap": 0.001})
    assert verdicts(d) == before  # only DAMA's own comparisons speak for DAMA


def fake_run(cfg, name: str, word_errors: list[int], ref_words: int = 10, machine: dict | None = None) -> None:
    """A finished run folder as `dama train` leaves it: results.json, per-utterance hypotheses and,
    with ``machine``, the config.json fields naming the machine."""
    import json

    from dama.bench.grid import cells, run_dir

    d = run_dir(cfg, next(c for c in cells(cfg) if c.name == name))
    d.mkdir(parents=True)
    rows = [{"id": f"u{i}", "word_errors": e, "ref_words": ref_words, "char_errors": e, "ref_chars": 5 * ref_words}
            for i, e in enumerate(word_errors)]
    (d / "test.hyps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    wer = sum(word_errors) / (ref_words * len(word_errors))
    (d / "results.json").write_text(json.dumps({
        "wer": wer, "cer": sum(word_errors) / (5 * ref_words * len(word_errors)), "trainable_params": 100,
        "peak_memory_mb": 1.0, "train_seconds": 3.0, "epoch_seconds": [1.0, 1.0, 1.0], "train_hours": 0.5,
        "train_utterances": 10, "n": len(word_errors), "total_seconds": 3600.0 * (2 if "lora" in name else 1)}))
    if machine is not None:
        (d / "config.json").write_text(json.dumps({"device": "cpu", "cpu_threads": 2, "torch": "2.13.0", **machine}))


def two_seed_grid(tmp_path, n_boot: int):
    """Swahili at 0.5 h: zero-shot (already run), DAMA and LoRA, seeds 0 and 1, no control set."""
    from dama.bench.config import load_config

    (tmp_path / "bench.yaml").write_text(
        "out: g\nmethods: [zero-shot, dama, lora]\nhours: [0.5]\nseeds: [0, 1]\ncontrol: null\n"
        f"n_boot: {n_boot}\nlanguages: {{sw: {{train: swahili:train}}}}\n")
    cfg = load_config(tmp_path / "bench.yaml")
    fake_run(cfg, "sw-zero-shot", [9] * 20)
    return cfg


def test_several_seeds_are_averaged_per_utterance_and_each_seeds_gap_is_reported(tmp_path):
    from dama.bench.report import collect, seeds_cell

    cfg = two_seed_grid(tmp_path, n_boot=200)
    fake_run(cfg, "sw-0.5h-dama-s0", [4] * 20)  # WER 0.40
    fake_run(cfg, "sw-0.5h-dama-s1", [6] * 20)  # 0.60
    fake_run(cfg, "sw-0.5h-lora-s0", [5] * 20)  # 0.50: DAMA ahead by 10 points
    fake_run(cfg, "sw-0.5h-lora-s1", [5] * 20)  # 0.50: DAMA behind by 10 points
    d = collect(cfg)
    g = {x["method"]: x for x in d["summary"]}
    assert g["dama"]["seeds"] == 2 and g["dama"]["wer"] == pytest.approx(0.5)  # per utterance: (4 + 6) / 2
    assert g["dama"]["wer_by_seed"] == {"0": pytest.approx(0.4), "1": pytest.approx(0.6)}
    assert g["zero-shot"]["wer_by_seed"] == {}
    assert seeds_cell(g["dama"]) == "2 (0.400, 0.600)" and seeds_cell(g["zero-shot"]) == "1"
    c = {x["b"]: x for x in d["comparisons"]}
    assert c["lora"]["diff"] == pytest.approx(0.0)  # averaged, the two seeds cancel out
    assert c["lora"]["diff_by_seed"] == {"0": pytest.approx(-0.1), "1": pytest.approx(0.1)}
    assert c["zero-shot"]["diff_by_seed"] == {}
    v = verdicts(d)[0]
    assert "Seed by seed (DAMA minus method, WER points): lora -10.0 (seed 0), +10.0 (seed 1)" in v
    assert "The seeds disagree in sign against: lora." in v


def test_results_and_report_carry_the_estimate_for_the_runs_left(tmp_path):
    from dama.bench.report import collect, time_left

    cfg = two_seed_grid(tmp_path, n_boot=100)
    fake_run(cfg, "sw-0.5h-dama-s0", [4] * 20)  # an hour
    fake_run(cfg, "sw-0.5h-lora-s0", [5] * 20)  # two hours
    d = collect(cfg)
    assert d["estimate_left"] == {"hours": 3.0, "runs": 2}  # dama-s1 and lora-s1, like their seed-0 runs
    assert time_left(d) == "; `--dry-run` estimates about 3.0 h for the 2 left"
    fake_run(cfg, "sw-0.5h-dama-s1", [4] * 20)
    fake_run(cfg, "sw-0.5h-lora-s1", [5] * 20)
    assert time_left(collect(cfg)) == ""  # nothing left


def test_methods_with_different_seeds_finished_are_compared_over_the_seeds_both_have(tmp_path):
    from dama.bench.report import collect, seed_note

    cfg = two_seed_grid(tmp_path, n_boot=100)
    fake_run(cfg, "sw-0.5h-dama-s0", [4] * 20)  # WER 0.40
    fake_run(cfg, "sw-0.5h-dama-s1", [8] * 20)  # 0.80: both seeds average 0.60
    fake_run(cfg, "sw-0.5h-lora-s1", [5] * 20)  # 0.50, seed 1 only
    d = collect(cfg)
    assert {x["b"] for x in d["comparisons"]} == {"zero-shot", "lora"}
    c = next(x for x in d["comparisons"] if x["b"] == "lora")
    assert c["diff"] == pytest.approx(0.3) and c["seeds"] == ["1"] and not c["all_seeds"]  # 0.80 - 0.50, not 0.10
    assert seed_note(c) == "seed 1"
    z = next(x for x in d["comparisons"] if x["b"] == "zero-shot")
    assert z["diff"] == pytest.approx(0.6 - 0.9) and z["all_seeds"] and seed_note(z) == ""
    v = verdicts(d)[0]
    assert "DAMA 0.600 over 2 seeds; over seed 1, which both have finished, DAMA is 30.0 points behind" in v


def test_methods_with_no_seed_in_common_are_not_compared(tmp_path):
    from dama.bench.report import collect

    cfg = two_seed_grid(tmp_path, n_boot=100)
    fake_run(cfg, "sw-0.5h-dama-s0", [4] * 20)
    fake_run(cfg, "sw-0.5h-lora-s1", [5] * 20)
    assert {x["b"] for x in collect(cfg)["comparisons"]} == {"zero-shot"}


def speed_file(path, **epochs):
    """A benchmarks/method_speed.py results file with the given epochs per method."""
    import json

    path.write_text(json.dumps({
        "machine": {"cpu": "Intel Xeon", "cpus": 2}, "setup": {"data": "swahili:train", "hours": 0.5},
        "methods": {m: {"epoch_seconds": e, "epoch_seconds_after_first": sum(e[1:]) / len(e[1:])}
                    for m, e in epochs.items()}}))
    return path


def test_side_by_side_timing_judges_the_time_target_beside_the_grid(tmp_path):
    from dama.bench.report import read_speed

    d = data(0.50, 0.45, dora_wer=0.49)  # dora is DAMA's equal-quality peer; in the grid it is faster (40 vs 50 s)
    f = speed_file(tmp_path / "method_speed_x.json", dama=[20.0, 15.0, 15.2, 14.8], lora=[22.0, 18.0, 18.1, 17.9])
    d["speed"] = read_speed([f])
    t = [x for x in targets(d) if "time per epoch" in x]
    assert len(t) == 1 and "not reached (DAMA 50.0 s vs dora 40.0 s" in t[0]  # dora is not in the file
    d["speed"] = read_speed([speed_file(f, dama=[20.0, 15.0, 15.2, 14.8], dora=[30.0, 18.0, 18.1, 17.9],
                                        lora=[22.0, 12.0, 12.0, 12.0])])
    t = [x for x in targets(d) if "time per epoch" in x]
    assert len(t) == 2 and "not reached (DAMA 50.0 s vs dora 40.0 s" in t[0]
    # lora is faster side by side but not of DAMA's quality (0.45 ± 0.02 against 0.50 ± 0.02): only dora counts
    assert ("(sw, 0.5h): reached when timed side by side (DAMA 15.0 s vs dora 18.0 s, 1.20x, ±0.3 s from the "
            "spread of epochs within runs; method_speed_x.json: Intel Xeon, 2 cores, swahili:train 0.5 h") in t[1]
    d["speed"] = read_speed([speed_file(f, dama=[20.0, 15.0, 15.2, 14.8], dora=[30.0, 15.1, 14.7, 15.2])])
    assert "within timing noise when timed side by side" in [x for x in targets(d) if "time per epoch" in x][1]
    d["speed"][0]["hours"] = 0.0  # method_speed.py --hours 0: the whole train split, not "0 h"
    assert "swahili:train the whole split, the methods" in [x for x in targets(d) if "time per epoch" in x][1]


def test_a_file_that_is_not_a_speed_result_is_named(tmp_path):
    from dama.bench.report import read_speed
    from dama.errors import DamaError

    (tmp_path / "x.json").write_text('{"methods": {"dama": {}}}')
    with pytest.raises(DamaError, match=r"x\.json: not a results file of benchmarks/method_speed.py"):
        read_speed([tmp_path / "x.json"])

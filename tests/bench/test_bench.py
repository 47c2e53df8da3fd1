"""`dama bench --quick` end to end on a tiny model: real subprocess runs, restart, report."""

import json
import os

import pytest

from dama.cli.main import main
from dama.testing import make_corpus, write_wav


def write_config(tmp_path, model_dir, lora_rank: int) -> str:
    root = make_corpus(tmp_path / "data", n_train=6, n_val=2, n_test=4)
    control = tmp_path / "control.jsonl"
    rows = []
    for i, lang in enumerate(["en"] * 6 + ["sw"]):  # --quick keeps 5 per language
        wav = write_wav(tmp_path / "control" / f"c{i}.wav", 1.0, freq=300 + 40 * i)
        rows.append(json.dumps({"audio_filepath": str(wav), "text": "hello there", "language": lang}))
    control.write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"""
model: {model_dir}
out: res
data_root: {root}
methods: [zero-shot, dama, lora, pissa]
languages: {{swahili: {{train: "swahili:train", language: sw}}}}
hours: [0.001, all]
seeds: [0, 1]
control: {control}
train: {{epochs: 1, batch_size: 4, threads: 1}}
method_args: {{lora: {{rank: {lora_rank}}}, dama: {{r_high: 4, r_low: 2}}}}
n_boot: 200
""")
    return str(cfg)


def test_quick_bench_runs_restarts_and_reports(tmp_path, tiny6_ct2_dir, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "res-quick"
    # a bad lora option: that run fails, the others finish, the exit status says so
    assert main(["bench", "--config", write_config(tmp_path, tiny6_ct2_dir, lora_rank=0), "--quick"]) == 2
    printed = capsys.readouterr()
    assert "1 run(s) failed: swahili-0.001h-lora-s0" in printed.err
    assert "[1/3] swahili-zero-shot finished in" in printed.out and " min left" in printed.out
    assert (out / "runs" / "swahili-0.001h-dama-s0" / "results.json").is_file()
    assert not (out / "runs" / "swahili-0.001h-lora-s0").exists()
    assert "rank" in (out / "logs" / "swahili-0.001h-lora-s0.log").read_text()
    dama_mtime = (out / "runs" / "swahili-0.001h-dama-s0" / "results.json").stat().st_mtime

    # fixed config: only the failed run runs again
    assert main(["bench", "--config", write_config(tmp_path, tiny6_ct2_dir, lora_rank=4), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "3 runs, 2 already finished, 1 to run" in printed
    assert (out / "runs" / "swahili-0.001h-dama-s0" / "results.json").stat().st_mtime == dama_mtime

    data = json.loads((out / "results.json").read_text())
    assert data["runs_finished"] == data["runs_total"] == 3
    runs = {r["method"]: r for r in data["runs"]}
    assert set(runs) == {"zero-shot", "dama", "lora"}
    assert runs["zero-shot"]["trainable_params"] == 0 and runs["zero-shot"]["forgetting"] == 0
    for r in runs.values():  # forgetting on the first 5 control clips per language: 5 en + 1 sw
        assert len((out / "runs" / r["run"] / "forgetting.hyps.jsonl").read_text().splitlines()) == 6
    assert data["control_per_language"] == 5
    for m in ("dama", "lora"):
        r = runs[m]
        assert r["trainable_params"] > 0 and r["extra_params_merged"] == 0  # merged: no extra weights
        assert r["control_wer_en"] is not None and r["forgetting_en"] is not None
        assert r["wer_lo"] <= r["wer"] <= r["wer_hi"]
        assert r["hours"] == "0.001h" and r["train_hours"] > 0
    # DAMA (r 4/2 on 6 layers) against lora r=4 everywhere: fewer trainable parameters
    assert runs["dama"]["trainable_params"] < runs["lora"]["trainable_params"]
    assert data["ranks"] == [4, 2, 2, 2, 2, 4]  # segments at 0.3 L and 0.7 L of 6 layers
    comps = {c["b"]: c for c in data["comparisons"]}
    assert set(comps) == {"lora", "zero-shot"} and all(0 <= c["p_bootstrap"] <= 1 for c in comps.values())
    # forgetting compared on the same control clips: DAMA minus LoRA, all clips and English alone
    fg, fg_en = comps["lora"]["forgetting"], comps["lora"]["forgetting_en"]
    assert fg["diff"] == pytest.approx(runs["dama"]["control_wer"] - runs["lora"]["control_wer"])
    assert fg_en["diff"] == pytest.approx(runs["dama"]["control_wer_en"] - runs["lora"]["control_wer_en"])
    assert fg["ci"][0] <= fg["diff"] <= fg["ci"][1] and 0 <= fg["p_bootstrap"] <= 1
    dama_group = next(g for g in data["summary"] if g["method"] == "dama")
    assert dama_group["forgetting_lo"] <= dama_group["forgetting"] <= dama_group["forgetting_hi"]
    assert comps["zero-shot"]["forgetting"]["diff"] == pytest.approx(dama_group["forgetting"])
    report = (out / "report.md").read_text()
    assert "| 0.001h | dama | 1 |" in report and "## Where DAMA wins and loses" in report
    from dama.machine import cpu_name

    assert f"Machine: cpu ({cpu_name()}), " in report  # labelled with the hardware the numbers came from
    for png in ("wer_vs_hours", "wer_vs_params", "cost", "dama_ranks"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("run,machine,language,method")

    # the report regenerates from the run folders alone
    (out / "report.md").unlink()
    assert main(["bench", "--config", str(tmp_path / "bench.yaml"), "--quick", "--report-only"]) == 0
    assert (out / "report.md").read_text() == report

    # other settings for the same out folder: refused, nothing rerun or overwritten
    cfg_text = (tmp_path / "bench.yaml").read_text().replace("epochs: 1", "epochs: 2")
    (tmp_path / "bench.yaml").write_text(cfg_text)
    assert main(["bench", "--config", str(tmp_path / "bench.yaml"), "--quick"]) == 2
    assert "made with other settings" in capsys.readouterr().err
    assert (out / "runs" / "swahili-0.001h-dama-s0" / "results.json").stat().st_mtime == dama_mtime

    # a grid without zero-shot sharing these runs (an ablation): forgetting is measured against the shared zero-shot
    ablation = tmp_path / "ablation.yaml"
    ablation.write_text(f"""
model: {tiny6_ct2_dir}
out: ablation
runs: res-quick/runs
data_root: {tmp_path / "data"}
methods: [dama]
languages: {{swahili: {{train: "swahili:train", language: sw}}}}
hours: [0.001]
control: {tmp_path / "control.jsonl"}
train: {{epochs: 1, batch_size: 4, threads: 1, val_max_utts: 10}}
test_limit: 40
method_args: {{dama: {{r_high: 4, r_low: 2}}}}
n_boot: 200
""")
    assert main(["bench", "--config", str(ablation), "--report-only"]) == 0
    shared = json.loads((tmp_path / "ablation" / "results.json").read_text())["runs"]
    assert [r["run"] for r in shared] == ["swahili-0.001h-dama-s0"]
    assert shared[0]["forgetting_en"] == runs["dama"]["forgetting_en"] and shared[0]["extra_params_merged"] == 0

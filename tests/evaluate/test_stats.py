import json
import math

import numpy as np
import pytest

from dama.errors import DataError
from dama.evaluate.stats import UtteranceErrors, bootstrap_ci, paired_compare, read_hyps, sign_test, stack_seeds


def errs(we, rw=None, ids=None) -> UtteranceErrors:
    we = np.asarray(we, dtype=float)
    rw = np.full(len(we), 10.0) if rw is None else np.asarray(rw, dtype=float)
    return UtteranceErrors(ids or [str(i) for i in range(len(we))], we, rw, we * 3, rw * 5)


def test_sign_test_matches_binomial_tails():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(8, 2) == pytest.approx(2 * sum(math.comb(10, i) for i in range(3)) / 2**10)  # 0.109375
    assert sign_test(2, 8) == sign_test(8, 2)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_utterances():
    rng = np.random.default_rng(1)
    small = errs(rng.integers(0, 6, 30))
    large = errs(rng.integers(0, 6, 600))
    lo, hi = bootstrap_ci(small)
    assert lo <= small.wer <= hi
    lo2, hi2 = bootstrap_ci(large)
    assert lo2 <= large.wer <= hi2
    assert hi2 - lo2 < (hi - lo) / 2
    assert bootstrap_ci(errs([2] * 50)) == pytest.approx((0.2, 0.2))  # no variance, no width
    clo, chi = bootstrap_ci(small, unit="char")
    assert clo <= small.cer <= chi and small.cer == pytest.approx(small.wer * 3 / 5)


def test_paired_comparison_detects_a_consistent_difference_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.integers(1, 8, 200).astype(float)
    better = errs(base - 1)
    worse = errs(base)
    pc = paired_compare(better, worse)
    assert pc.diff == pytest.approx(-0.1) and pc.ci[1] < 0 and pc.p_bootstrap < 0.01
    assert pc.wins == 200 and pc.losses == 0 and pc.p_sign < 1e-10
    a, b = errs(rng.integers(0, 6, 200)), errs(rng.integers(0, 6, 200))
    noise = paired_compare(a, b)
    assert noise.ci[0] < noise.diff < noise.ci[1]
    with pytest.raises(DataError, match="same test utterances"):
        paired_compare(errs([1, 2]), errs([1, 2], ids=["x", "y"]))


def test_stack_seeds_averages_per_utterance():
    s = stack_seeds([errs([1, 3]), errs([3, 5])])
    assert list(s.word_errors) == [2, 4] and s.wer == pytest.approx(0.3)
    with pytest.raises(DataError):
        stack_seeds([errs([1, 3]), errs([1, 3], ids=["a", "b"])])


def test_read_hyps_round_trip_and_errors(tmp_path):
    p = tmp_path / "t.hyps.jsonl"
    rows = [{"id": "u1", "word_errors": 1, "ref_words": 4, "char_errors": 2, "ref_chars": 20},
            {"id": "u2", "word_errors": 0, "ref_words": 6, "char_errors": 0, "ref_chars": 30}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    e = read_hyps(p)
    assert e.ids == ["u1", "u2"] and e.wer == pytest.approx(0.1) and e.cer == pytest.approx(0.04)
    p.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"t.hyps.jsonl:2"):
        read_hyps(p)
    with pytest.raises(DataError, match="not found"):
        read_hyps(tmp_path / "missing.jsonl")


def test_read_hyps_keeps_languages_and_selects_one(tmp_path):
    p = tmp_path / "control.hyps.jsonl"
    rows = [{"id": f"u{i}", "language": lang, "word_errors": i, "ref_words": 10, "char_errors": i, "ref_chars": 50}
            for i, lang in enumerate(["en", "de", "en"])]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    e = read_hyps(p)
    assert e.languages == ["en", "de", "en"]
    en = e.only("en")
    assert en.ids == ["u0", "u2"] and en.wer == pytest.approx(0.1) and en.languages == ["en", "en"]
    assert stack_seeds([e, e]).only("de").wer == pytest.approx(0.1)  # languages survive seed averaging
    assert e.only("fr").ids == []
    p.write_text(json.dumps({k: v for k, v in rows[0].items() if k != "language"}) + "\n")
    with pytest.raises(DataError, match="no languages"):
        read_hyps(p).only("en")


def test_read_hyps_counts_errors_of_files_written_without_them(tmp_path):
    p = tmp_path / "old.hyps.jsonl"
    p.write_text(json.dumps({"id": "u1", "ref": "Ọmọ náà lọ!", "hyp": "ọmọ na lọ"}) + "\n")
    e = read_hyps(p)  # normalised as everywhere else: case and punctuation go, tone marks stay
    assert list(e.word_errors) == [1] and list(e.ref_words) == [3]
    p.write_text(json.dumps({"id": "u1", "hyp": "x"}) + "\n")
    with pytest.raises(DataError, match=r"old.hyps.jsonl:1: no error counts"):
        read_hyps(p)


def test_from_texts_counts_each_utterance_and_matches_corpus_errors():
    from dama.evaluate.metrics import corpus_errors

    refs, hyps = ["habari yako", "asante sana rafiki", ""], ["habari", "asante sana rafiki", "ndiyo"]
    e = UtteranceErrors.from_texts(["a", "b", "c"], refs, hyps)
    c = corpus_errors(refs, hyps)
    assert e.ids == ["a", "b", "c"] and list(e.word_errors) == [1, 0, 1] and list(e.ref_words) == [2, 3, 0]
    assert e.wer == c.wer and e.cer == c.cer
    with pytest.raises(ValueError, match="2 ids, 3 references"):
        UtteranceErrors.from_texts(["a", "b"], refs, hyps)

"""advlib.results.verdict, and the verdicts of the "Paper vs this book" page: known rows give known
verdicts, and the page's summary counts every committed row once."""
import re
import sys
from pathlib import Path

import pytest

from advlib import results
from advlib.evaluate import Accuracy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def row(paper, ours, claim="MNIST: test accuracy", **interval):
    """A row as load_results gives it; ``ours`` an Accuracy puts its interval in ci_low, ci_high."""
    if isinstance(ours, Accuracy):
        return {"claim": claim, "paper": paper, "ours": str(ours), "ci_low": ours.low, "ci_high": ours.high}
    return {"claim": claim, "paper": paper, "ours": ours, **interval}


ACC = Accuracy(940, 1000)  # 94.0% [92.4, 95.3], n=1000


@pytest.mark.parametrize("paper, label", [
    ("94.1% (Some et al. 2020)", "reproduces"),
    ("96% (Some et al. 2020)", "below"),
    ("90.00%", "above"),
    ("92% - 93%", "reproduces"),                  # a range: overlaps
    ("96-97%", "below"),
    ("91 to 92%", "above"),
    ("95.6% +- 0.4", "reproduces"),               # widened by its own uncertainty to 95.2-96.0
    ("95.6% ± 0.1%", "below"),
    ("95.3%", "reproduces"),                      # 95.25-95.35 against our 92.35-95.31
    ("95.40%", "below"),                          # 95.395-95.405
    ("92.4%", "reproduces"),                      # 92.35-92.45
    ("92.30%", "above"),                          # 92.295-92.305
])
def test_comparable_rows(paper, label):
    assert (ACC.low, ACC.high) == pytest.approx((0.92353, 0.95310), abs=1e-5)
    got, reason = results.verdict(row(paper, ACC))
    assert got == label, (paper, reason)
    assert reason.startswith("paper ") and ", ours " in reason


def test_rounding_of_the_papers_number():
    """98% stands for 97.5% to 98.5%: an interval ending at 97.9% reproduces it, one ending at 97.4%
    does not; 98.0% stands for 97.95% to 98.05%."""
    r = row("98%", "x", ci_low=0.93, ci_high=0.979)
    assert results.verdict(r) == ("reproduces", "paper 97.50–98.50%, ours 93.00–97.90%")
    assert results.verdict(dict(r, ci_high=0.974))[0] == "below"
    assert results.verdict(dict(r, paper="98.0%"))[0] == "below"


@pytest.mark.parametrize("paper, ours, label", [
    ("0%", Accuracy(0, 300), "reproduces"),       # 0.0% [0.0, 1.3]
    ("0.61%", Accuracy(0, 1000), "below"),         # 0.0% [0.0, 0.4]
    ("2%", Accuracy(0, 1000), "below"),
    ("100%", Accuracy(300, 300), "reproduces"),   # 100.0% [98.7, 100.0]
    ("97%", Accuracy(300, 300), "above"),
    ("100.0%", Accuracy(299, 300), "below"),      # 99.7% [98.1, 99.9]: the interval stops short of 100
    ("99.9%", Accuracy(299, 300), "reproduces"),
])
def test_the_ends_of_the_scale(paper, ours, label):
    assert results.verdict(row(paper, ours))[0] == label


def test_an_accuracy_restated_as_its_error_is_one_number():
    # the committed row of chapter 02: 98.10% with the error's reported +- 0.10 points
    r = row("98.10% (error 1.90% +- 0.10), 1000-1000 MLPs", "x", ci_low=0.935, ci_high=0.944)
    assert results.verdict(r) == ("below", "paper 98.00–98.20%, ours 93.50–94.40%")
    r = row("78.02% (test error 21.98%)", "x", ci_low=0.77, ci_high=0.7803)
    assert results.verdict(r)[0] == "reproduces"
    # a claim about the error keeps the error
    r = row("98.10% (error 1.90%)", "x", claim="test error", ci_low=0.018, ci_high=0.02)
    assert results.verdict(r) == ("reproduces", "paper 1.895–1.905%, ours 1.80–2.00%")


def test_the_interval_written_in_ours_is_used_when_the_row_has_no_columns():
    r = row("0.782% (maxout) (Goodfellow et al. 2015)", "0.80% [0.64, 0.99], n=10000", claim="test error")
    assert results.verdict(r) == ("reproduces", "paper 0.7815–0.7825%, ours 0.635–0.995%")
    r = row("17.9% (Goodfellow et al. 2015)", "3.25% [2.92, 3.62], n=10000")
    assert results.verdict(r)[0] == "below"
    r = row("89.62% under PGD-100", "90.3% [88.3, 92.0], n=1000 under PGD-50 x 3 restarts")
    assert results.verdict(r)[0] == "reproduces"


@pytest.mark.parametrize("paper, ours, reason", [
    # nothing to compare on our side
    ("97.6% (maxout network)", "79.9% (over the 8788 fooled of 10000 test images)", "no interval on ours"),
    ("37.28 (AE)", "2.82", "no interval on ours"),
    ("40 epochs", "1.5 epochs, 14 min", "no interval on ours"),
    ("53.49% best vs 45.59% final", "66.9% [63.9, 69.7], n=1000 at epoch 56 vs 66.3% [63.3, 69.2], n=1000",
     "several intervals on ours"),
    # nothing to compare on the paper's side
    ("not reported", ACC, "not reported in the paper"),
    ("(not reported in the paper)", ACC, "not reported in the paper"),
    ("not measured (Goodfellow et al. 2015)", ACC, "not reported in the paper"),
    ("(not in the tutorial)", ACC, "not reported in the paper"),
    ("figure 6 of the paper, by eye", ACC, "paper gives no percentage"),
    ("about PGD-10's robustness at a quarter of its cost", ACC, "paper gives no percentage"),
    ("PGD accuracy collapses to about 0% (Wong et al.)", ACC, "paper's number is approximate"),
    ("~95%", ACC, "paper's number is approximate"),
    ("89.62% under PGD-100 (Madry et al.); 88.50% under AutoAttack", ACC, "paper gives several numbers"),
    ("97.6% (maxout network); 79.3% (shallow softmax)", ACC, "paper gives several numbers"),
    # the row says that the setting differs
    ("99.41%, trained at L2 1.5; here 2.0 (public reproduction)", ACC,
     "different setting (trained at L2 1.5; here 2.0)"),
])
def test_rows_that_are_not_comparable(paper, ours, reason):
    assert results.verdict(row(paper, ours)) == ("not comparable", reason)


def test_a_parameter_set_otherwise_in_the_paper_is_a_different_setting():
    r = row("97.67% (test error 2.33%, with xi = 1e-6)", Accuracy(413, 1000),
            claim="MNIST, 100 labels, VAT, xi=0.001: test accuracy")
    assert results.verdict(r) == ("not comparable", "different setting (xi = 1e-6 in the paper, xi = 0.001 here)")
    same = dict(r, claim="MNIST, 100 labels, VAT, xi=1e-06: test accuracy")  # the same value, written otherwise
    assert results.verdict(same)[0] == "below"
    fraction = row("45.8% with eps = 8/255", Accuracy(348, 1000), claim="PGD, eps=16/255")
    assert results.verdict(fraction) == ("not comparable",
                                         "different setting (eps = 8/255 in the paper, eps = 16/255 here)")
    assert results.verdict(dict(fraction, claim="PGD, eps=8/255"))[0] == "below"
    assert results.verdict(dict(fraction, claim="PGD, eps=0.0313725490196"))[0] == "below"  # 8/255


def test_missing_or_nan_interval_columns_fall_back_to_the_text():
    nan = float("nan")
    assert results.verdict(row("94%", "94.0% [92.4, 95.3], n=1000", ci_low=nan, ci_high=nan))[0] == "reproduces"
    assert results.verdict(row("94%", "about 94%", ci_low=nan, ci_high=nan)) == ("not comparable",
                                                                               "no interval on ours")
    assert results.verdict(row("94%", "94%", ci_low=0.92)) == ("not comparable", "no interval on ours")


@pytest.mark.parametrize("bad, match", [
    ({"claim": "a", "paper": "94%"}, "must have the keys"),
    ({"claim": "a", "paper": 0.94, "ours": "94%"}, r"row\['paper'\] must be a string"),
    ({"claim": "a", "paper": "94%", "ours": "x", "ci_low": 0.95, "ci_high": 0.93}, "ci_low <= ci_high"),
    ("94%", "must have the keys"),
])
def test_bad_rows_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        results.verdict(bad)


def test_every_label_is_a_verdict_and_every_comparable_reason_names_both_ranges():
    loaded = results.load_results(NOTEBOOKS)
    for rec in loaded.to_dict("records"):
        label, reason = results.verdict(rec)
        assert label in results.VERDICTS and reason, rec
        compared = re.fullmatch(r"paper [0-9.]+–[0-9.]+%, ours [0-9.]+–[0-9.]+%", reason)
        assert (label == "not comparable") == (compared is None), (rec, reason)


# ------------------------------------------------------------------ the page
@pytest.fixture(scope="module")
def page():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import paper_vs_book
    return paper_vs_book


def test_the_summary_counts_every_row_once(page, tmp_path):
    rows = [{"claim": "clean", "paper": "94%", "ours": ACC},
            {"claim": "robust", "paper": "99%", "ours": ACC},
            {"claim": "training", "paper": "40 epochs", "ours": "2 epochs"}]
    results.paper_vs_ours("04_fgsm", rows, budget="book", folder=tmp_path)
    results.paper_vs_ours("07_pgd_adversarial_training", rows[:1], budget="book", folder=tmp_path)
    counts = page.summary(results.load_results(tmp_path))
    assert list(counts.index) == ["04_fgsm", "07_pgd_adversarial_training", page.TOTAL]
    assert list(counts.columns) == ["rows", *results.VERDICTS]
    assert counts.loc["04_fgsm"].tolist() == [3, 1, 1, 0, 1]
    assert counts.loc["07_pgd_adversarial_training"].tolist() == [1, 1, 0, 0, 0]
    assert counts.loc[page.TOTAL].tolist() == [4, 2, 1, 0, 1]


def test_the_summary_of_the_committed_rows(page):
    loaded = results.load_results(NOTEBOOKS)
    counts = page.summary(loaded)
    assert counts.loc[page.TOTAL, "rows"] == len(loaded)
    assert (counts[list(results.VERDICTS)].sum(axis=1) == counts["rows"]).all()
    assert list(counts.index[:-1]) == sorted(set(loaded.chapter))
    judged = page.with_verdicts(loaded)
    assert list(judged.columns[-2:]) == ["verdict", "reason"] and len(judged) == len(loaded)


def test_the_page_has_no_stale_sentence_and_shows_both_tables():
    text = (ROOT / "book" / "paper_vs_book.md").read_text(encoding="utf-8")
    assert "not listed yet" not in text
    assert text.index("{paper-vs-book-summary}") < text.index("{paper-vs-book}\n")

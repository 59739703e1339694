"""Intervals and the paired test behind `finetune compare`'s ranking."""
import pytest

from tfx_finetune.reports import significance


def test_wilson_interval_matches_the_textbook_values():
    low, high = significance.accuracy_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = significance.accuracy_interval(200, 200)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.9812, abs=1e-4)


def test_about_three_points_is_noise_on_two_hundred_images():
    """The issue's case: 0.9385 and 0.9436 on ~195 test photos overlap widely."""
    low, high = significance.accuracy_interval(184, 195)
    assert high - low > 0.06


def test_mcnemar_counts_only_the_images_the_models_disagree_on():
    always = [True] * 90
    # Ten images only the first gets right: p = 2 * 0.5**10.
    p, disagree = significance.mcnemar_p_value(always + [True] * 10, always + [False] * 10)
    assert disagree == 10 and p == pytest.approx(2 * 0.5 ** 10)
    # One each way: no evidence at all.
    p, disagree = significance.mcnemar_p_value(always + [True, False], always + [False, True])
    assert disagree == 2 and p == pytest.approx(1.0)
    assert significance.mcnemar_p_value([True, False], [True, False]) == (1.0, 0)


def test_answers_for_different_images_are_refused():
    with pytest.raises(ValueError, match="same test images"):
        significance.mcnemar_p_value([True], [True, False])


def _row(name, correct):
    from tfx_finetune.reports import compare_table

    low, high = significance.accuracy_interval(sum(correct), len(correct))
    return compare_table.Row(name, "0", phase1_val_accuracy=0.9,
                       test_accuracy=sum(correct) / len(correct), test_accuracy_low=low,
                       test_accuracy_high=high, test_correct=tuple(correct))


@pytest.mark.parametrize("second_wrong, verdict", [
    (2, "the two cannot be told apart"), (30, "the best is better at the 5 % level")])
def test_the_compare_table_shows_intervals_and_the_paired_test(tmp_path, second_wrong, verdict):
    from tfx_finetune.reports import compare_table

    best = _row("a", [True] * 190 + [False] * 10)
    second = _row("b", [True] * (190 - second_wrong) + [False] * (10 + second_wrong))
    compare_table.write_table([second, best], compare_table.best_row([second, best]), str(tmp_path))
    text = (tmp_path / "results.md").read_text()
    assert "| 0.9500 (0.910–0.973) |" in text
    assert "**Best: a, unfreeze 0**" in text and "Next: b, unfreeze 0" in text
    assert f"disagree on {second_wrong}" in text and verdict in text

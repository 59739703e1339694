import math

import numpy as np

from pipeline import run_report


def test_per_class_precision_and_recall_from_the_confusion_matrix():
    matrix = np.array([[8, 2, 0],   # actual a: 8 right, 2 called b
                       [1, 9, 0],   # actual b
                       [0, 0, 0]])  # c never occurs and is never predicted
    rows = run_report.per_class_table(matrix, ["a", "b", "c"])
    assert rows[0] == ("a", 10, 8 / 9, 0.8)
    assert rows[1] == ("b", 10, 9 / 11, 0.9)
    assert rows[2][:2] == ("c", 0) and math.isnan(rows[2][2]) and math.isnan(rows[2][3])

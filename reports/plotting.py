"""matplotlib for the commands' charts: the file-only Agg backend, chosen before pyplot loads."""
from __future__ import annotations


def pyplot():
    """`matplotlib.pyplot` on the Agg backend: charts are written to files, and no display
    (a server, a CI job) is needed. Imported on call: matplotlib is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

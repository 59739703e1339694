"""The shared results file of the performance benchmarks (bench/results/perf.json)."""
import json
import os

PERF_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "perf.json")


def merge_and_print(results: dict, path: str = PERF_JSON, shown=None) -> None:
    """Merges `results` into the JSON file at `path` (other figures are kept) and prints them
    (only the `shown` keys, when given)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    existing = {}
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
    existing.update(results)
    with open(path, "w") as f:
        json.dump(existing, f, indent=2, sort_keys=True)
    for key in shown or sorted(results):
        print(f"{key}: {results[key]}")

"""`finetune lr-find`: a learning-rate range test for phase 1 (the new head on the frozen base).

The rate grows exponentially from `min_lr` to `max_lr` over `steps` phase-1 training steps and
the loss of every step is recorded (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017). Per-step losses are noisy, so both rules below read moving averages over a
window of about 5 % of the steps (`half_window`). The sweep stops early once the mean of the
latest window of losses exceeds `DIVERGENCE_FACTOR` times the lowest such mean (or a loss is
not finite): past that point the head is diverging and more steps only waste time.

Suggestion rule (`RULE`): the rate at which the smoothed loss (the mean over the window centred
on each step: no lag, unlike a trailing average, which would shift the minimum to larger rates)
is lowest, divided by 10. At the minimum, training is already on the edge of instability; a
tenth of it is still on the steep, falling part of the curve. It is sturdier than "steepest
slope", which follows the noise of a short curve.

It trains on exactly what the pipeline's Trainer sees: the upstream of `create_pipeline`
(ImageExampleGen to Transform) runs as a partial run of the same pipeline through the
LocalDagRunner, so it is shared with `finetune run` through the cache; the model comes from
`components.model.build_model` and the batches from the Trainer's own input function. It
steps what the Trainer's phase 1 fits (`measured`): with `phase1_on_features` (and a frozen
base), the head alone on the base's features of the un-augmented images, computed by the
Trainer's `head_on_features`; else the whole model on the (augmented) images. It is a
read-only experiment: nothing is trained past the sweep, published or fed back to the pipeline.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import Callable, List, Optional, Sequence

from tfx_finetune.commands import console, options
from tfx_finetune.pipeline import config_checks

MIN_STEPS = 10
DIVERGENCE_FACTOR = 4.0
RULE = "the rate at the lowest smoothed loss, divided by 10"
OUTPUT_DIR = "lr_find"
ON_FEATURES = "head on precomputed features (phase1_on_features)"
ON_IMAGES = "whole model on"  # augmented images, or images when augment is empty


class LrFindError(RuntimeError):
    """The sweep gave nothing to suggest a rate from; the message says what to change."""


@dataclasses.dataclass
class Sweep:
    """One range test: per-step rates, losses and smoothed losses (equal lengths), the width
    of the moving-average window, why it stopped before the last rate ("" if it did not),
    and what it trained (`measured`; "" when the steps were not a phase-1 model's)."""

    rates: List[float]
    losses: List[float]
    smoothed: List[float]
    window: int
    stop_reason: str = ""
    measured: str = ""


@dataclasses.dataclass
class Suggestion:
    rate: float
    lowest_rate: float  # where the smoothed loss is lowest
    warning: str = ""  # set when the curve does not support the rule well

    @property
    def reason(self) -> str:
        return f"{RULE}: lowest at {self.lowest_rate:.1e}"


def measured(on_features: bool, augment: Sequence[str], from_scratch: bool) -> str:
    """What the sweep trains, as the Trainer's phase 1 does (`trainer.train_two_phases`): the
    head on features (`ON_FEATURES`), or the whole model on images (`ON_IMAGES`) and why."""
    if on_features:
        return ON_FEATURES
    images = "augmented images" if augment else "images (augment: none)"
    why = "weights: none" if from_scratch else "phase1_on_features off"
    return f"{ON_IMAGES} {images} ({why})"


def check_range(min_lr: float, max_lr: float, steps: int) -> None:
    """Raises ConfigError (naming the flag) unless 0 < min_lr < max_lr <= 1 and steps >= 10."""
    if not 0 < min_lr < 1:
        raise config_checks.ConfigError(
            f"--min-lr {min_lr} is invalid: expected a rate in (0, 1)")
    if not min_lr < max_lr <= 1:
        raise config_checks.ConfigError(
            f"--max-lr {max_lr} is invalid: expected a rate above --min-lr {min_lr} and at most 1")
    if steps < MIN_STEPS:
        raise config_checks.ConfigError(
            f"--steps {steps} is invalid: expected at least {MIN_STEPS} steps")


def schedule(min_lr: float, max_lr: float, steps: int) -> List[float]:
    """`steps` rates growing by a constant factor from `min_lr` to `max_lr` (both included)."""
    return [min_lr * (max_lr / min_lr) ** (i / (steps - 1)) for i in range(steps)]


def half_window(steps: int) -> int:
    """Half the width of the moving-average window (about 5 % of the steps, at least 3 wide)."""
    return max(1, steps // 40)


def centred_means(values: Sequence[float], half: int) -> List[float]:
    """The mean of each value with up to `half` neighbours on each side."""
    return [statistics.fmean(values[max(0, i - half):i + half + 1]) for i in range(len(values))]


def sweep(train_step: Callable[[float], float], rates: Sequence[float],
          progress: Optional[Callable[[int, float, float, float], None]] = None) -> Sweep:
    """Calls `train_step(rate)` (one training step at that rate, returning its loss) for each
    rate in turn, until the last rate or divergence.

    Args:
      train_step: trains one batch at the given rate and returns the batch loss.
      rates: the rates to try, in order.
      progress: called after every recorded step with its index, rate, loss and the mean
        loss of the latest window.
    """
    half = half_window(len(rates))
    width = 2 * half + 1
    losses: List[float] = []
    recent: List[float] = []  # trailing means, the only smoothing known while sweeping
    stop_reason = ""
    for index, rate in enumerate(rates):
        loss = train_step(rate)
        if not math.isfinite(loss):
            stop_reason = f"the loss was not finite at rate {rate:.1e}"
            break
        losses.append(loss)
        recent.append(statistics.fmean(losses[-width:]))
        if progress:
            progress(index, rate, loss, recent[-1])
        if recent[-1] > DIVERGENCE_FACTOR * min(recent):
            stop_reason = (f"the mean loss of the last {width} steps passed "
                           f"{DIVERGENCE_FACTOR:g}x its lowest at rate {rate:.1e}")
            break
    return Sweep(list(rates[:len(losses)]), losses, centred_means(losses, half), width,
                 stop_reason)


def suggest(result: Sweep) -> Suggestion:
    """Applies `RULE` to a sweep; the suggestion never leaves the range of rates tried.

    Raises:
      LrFindError: when no finite loss was recorded.
    """
    if not result.smoothed:
        raise LrFindError(f"{result.stop_reason} on the first step: lower --min-lr, and check "
                          "the data and the weights")
    best = min(range(len(result.smoothed)), key=result.smoothed.__getitem__)
    lowest = result.rates[best]
    rate = float(f"{max(lowest / 10, result.rates[0]):.1e}")
    warning = ""
    if best == 0:
        warning = ("the loss never fell below its first value: lower --min-lr (or train more "
                   "steps); the suggestion is only the smallest rate tried")
    elif best == len(result.smoothed) - 1 and not result.stop_reason:
        warning = ("the loss was still falling at the largest rate tried: raise --max-lr to "
                   "see where it turns")
    return Suggestion(rate, lowest, warning)


def format_suggestion(suggestion: Suggestion, trained: str, png: str, data: str) -> str:
    """The lines printed at the end of `finetune lr-find`; `trained` is what it measured."""
    lines = [f"suggested phase1_learning_rate: {suggestion.rate:.1e} ({suggestion.reason}); "
             f"set it with --phase1-learning-rate {suggestion.rate:.1e}",
             f"  measured: {trained}"]
    if suggestion.warning:
        lines.append(f"  warning: {suggestion.warning}")
    lines.append(f"  curve: {png}\n  data: {data}")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    """`finetune lr-find`."""
    from tfx_finetune.commands import demo

    check_range(args.min_lr, args.max_lr, args.steps)
    config = demo.config_from_args(args) if args.demo else options.make_config(args)
    started = time.time()
    log = options.log_path(args, config)
    with console.logged("lr-find", log, lambda: (LrFindError,)):
        # Imported inside: TensorFlow's start-up lines belong in the log.
        from tfx_finetune.commands import lr_find_training

        config_checks.check_weights(config)  # before ingestion, statistics and Transform run
        result, suggestion, png, data = lr_find_training.lr_find(config, args.min_lr,
                                                                 args.max_lr, args.steps)
    print(format_suggestion(suggestion, result.measured, png, data))
    print(f"  wall time: {time.time() - started:.1f} s")
    console.print_log_path(log)
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "lr-find", help="learning-rate range test for phase 1: loss-vs-rate curve and a "
                        "suggested phase1_learning_rate")
    options.add_config_flags(parser)
    options.add_verbose_flag(parser)
    parser.add_argument("--demo", action="store_true",
                        help="start from the demo's config, as `finetune demo` does")
    parser.add_argument("--min-lr", type=float, default=1e-6, metavar="RATE",
                        help="first rate of the sweep (default: 1e-6)")
    parser.add_argument("--max-lr", type=float, default=1.0, metavar="RATE",
                        help="last rate of the sweep, at most 1 (default: 1)")
    parser.add_argument("--steps", type=int, default=100,
                        help="phase-1 training steps (batches) of the sweep (default: 100)")
    parser.set_defaults(func=command)

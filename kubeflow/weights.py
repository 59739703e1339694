"""ImageNet weights inside the pipeline image, so that a Trainer pod needs no internet.

`weights: imagenet` makes Keras download the file when the model is built; in a pod without
egress that fails (or hangs until a timeout). `kubeflow/Dockerfile` runs this module at build
time (`--build-arg PRETRAINED=...`), when the build has internet: it builds each requested
base with Keras' ImageNet weights and saves them as a weights file under `IMAGE_WEIGHTS_DIR`.
`finetune compile` then points `weights: imagenet` at that file (`baked_path`), which the
Trainer loads through the same weights-file path as any user's file.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from tfx_finetune.components import backbones
from tfx_finetune.kubeflow.resources import IMAGE_PROJECT_DIR

IMAGE_WEIGHTS_DIR = f"{IMAGE_PROJECT_DIR}/weights"
# Where the ImageNet weights of `weights: imagenet` come from in the Trainer's pod: the file
# baked into the image, or Keras' download (needs egress).
FROM_IMAGE = "image"
DOWNLOAD = "download"
SOURCES = (FROM_IMAGE, DOWNLOAD)
# MobileNets v1/v2 publish ImageNet weights per input size and take 224's for other sizes;
# the others' convolution weights do not depend on the size. Any size loads the file.
BAKE_IMAGE_SIZE = 224


def baked_path(backbone: str, alpha: float, directory: str = IMAGE_WEIGHTS_DIR) -> str:
    """Where the image holds the ImageNet weights of `backbone` at width `alpha`."""
    return os.path.join(directory, f"{backbone}_{alpha:g}_imagenet_notop.h5")


def parse_pretrained(text: str) -> List[Tuple[str, float]]:
    """Reads the Dockerfile's `PRETRAINED` list: `backbone[:alpha]` items, space-separated.

    Raises:
      ValueError: on an unknown backbone or a width Keras publishes no weights for.
    """
    items = []
    for item in text.split():
        name, _, alpha_text = item.partition(":")
        if name not in backbones.BACKBONES:
            raise ValueError(f"PRETRAINED {item!r}: unknown backbone {name!r}; one of "
                             f"{', '.join(sorted(backbones.BACKBONES))}")
        alpha = float(alpha_text) if alpha_text else backbones.FULL_WIDTH
        widths = backbones.BACKBONES[name].alphas or (backbones.FULL_WIDTH,)
        if alpha not in widths:
            raise ValueError(f"PRETRAINED {item!r}: {name} has ImageNet weights at widths "
                             f"{', '.join(map(str, widths))}")
        items.append((name, alpha))
    return items


def bake(pretrained: str, directory: str = IMAGE_WEIGHTS_DIR) -> List[str]:
    """Downloads the ImageNet weights of each `PRETRAINED` item and saves them under
    `directory`; returns the files written."""
    import tensorflow as tf

    from tfx_finetune.components import model as model_lib

    written = []
    os.makedirs(directory, exist_ok=True)
    for name, alpha in parse_pretrained(pretrained):
        base = model_lib.build_base(name, BAKE_IMAGE_SIZE, backbones.IMAGENET_WEIGHTS, alpha)
        path = baked_path(name, alpha, directory)
        base.save_weights(path)
        written.append(path)
        tf.keras.backend.clear_session()
    return written


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m tfx_finetune.kubeflow.weights "mobilenet_v3_small mobilenet_v2:0.5"`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pretrained", help="backbone[:alpha] items, space-separated")
    parser.add_argument("--directory", default=IMAGE_WEIGHTS_DIR)
    args = parser.parse_args(argv)
    try:
        for path in bake(args.pretrained, args.directory):
            print(f"baked {path}")
    except ValueError as e:
        print(f"weights: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

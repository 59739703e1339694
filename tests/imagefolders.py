"""Tiny real image folders built from scikit-learn's digits, for tests."""
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digit_images(classes, per_class):
    """Real 8×8 digits as uint8 arrays: {class: [image, ...]}."""
    digits = load_digits()
    result = {}
    for c in classes:
        picked = digits.images[digits.target == c][:per_class]
        result[str(c)] = [np.round(im * 255 / 16).astype(np.uint8) for im in picked]
    return result


def write_folder(root, classes=(0, 1), per_class=6, fmt="PNG", ext=".png"):
    """Writes `<root>/<class>/<i><ext>` and returns `root`."""
    for label, images in digit_images(classes, per_class).items():
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i, im in enumerate(images):
            Image.fromarray(im, mode="L").convert("RGB").save(
                os.path.join(root, label, f"{i:03d}{ext}"), format=fmt)
    return str(root)


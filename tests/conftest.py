"""Shared fixtures. Importing `components` first fixes the Keras version before TensorFlow."""
import tfx_finetune.components  # noqa: F401

import os

import pytest
from PIL import Image

from imagefolders import digit_images


@pytest.fixture
def mixed_format_folder(tmp_path):
    """Two classes whose images come in every supported encoding and colour mode."""
    root = tmp_path / "images"
    images = digit_images((3, 7), 5)
    variants = [("JPEG", ".jpg", "RGB"), ("PNG", ".png", "L"), ("GIF", ".gif", "P"),
                ("BMP", ".bmp", "RGB"), ("PNG", ".PNG", "RGBA")]
    for label, ims in images.items():
        os.makedirs(root / label)
        for im, (fmt, ext, mode) in zip(ims, variants):
            Image.fromarray(im, mode="L").convert(mode).save(root / label / f"x{ext}", format=fmt)
    return str(root)

"""Checking that bytes are an image TensorFlow can decode, within size and pixel limits.

Imports neither Beam nor TFX nor TensorFlow: user tools (`finetune predict`) check images too.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp"})
# What TensorFlow's decode_image (used in Transform and serving) can read.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """Returns "" when `data` is an image TensorFlow can decode within the limits, else why not.

    The pixel count is read from the header before decoding, so decompression bombs are
    refused without being decoded.
    """
    if not data:
        return "empty file"
    if len(data) > max_bytes:
        return f"file is {len(data)} bytes, above max_image_bytes={max_bytes}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return (f"image is {width}x{height} pixels, above "
                            f"max_image_pixels={max_pixels}")
                if image.format not in DECODABLE_FORMATS:
                    return (f"format {image.format} cannot be decoded by TensorFlow "
                            f"(use {', '.join(sorted(DECODABLE_FORMATS))})")
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"decompression bomb refused: {e}"
    except UnidentifiedImageError:  # PIL's message names only an in-memory buffer
        return "cannot decode image: not an image format PIL recognises"
    except Exception as e:  # PIL raises many types for corrupt data; all mean "not an image".
        return f"cannot decode image: {e}"
    return ""

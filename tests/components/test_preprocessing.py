import glob
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from tfx_finetune.components import features, preprocessing


def _raw_metadata():
    spec = {key: tf.io.FixedLenFeature([1], tf.string)
            for key in (features.IMAGE_KEY, features.LABEL_KEY)}
    return dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))


def test_preprocessing_fn_decodes_every_format_to_rgb_and_builds_the_vocabulary(
        tmp_path, mixed_format_folder):
    paths = sorted(glob.glob(os.path.join(mixed_format_folder, "*", "*")))
    raw = [{features.IMAGE_KEY: [open(p, "rb").read()],
            features.LABEL_KEY: [os.path.basename(os.path.dirname(p)).encode()]}
           for p in paths]
    with tft_beam.Context(temp_dir=str(tmp_path / "tft")):
        (transformed, _), transform_fn = (
            (raw, _raw_metadata())
            | tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing.preprocessing_fn(inputs, {"image_size": 24})))
        output_dir = str(tmp_path / "transform_fn")
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)

    images = np.stack([row[features.transformed_name(features.IMAGE_KEY)] for row in transformed])
    labels = [int(row[features.transformed_name(features.LABEL_KEY)]) for row in transformed]
    assert images.shape == (10, 24, 24, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 200
    # Every encoding (JPEG, grey PNG, palette GIF, BMP, RGBA PNG) ends up as grey RGB.
    assert np.allclose(images[..., 0], images[..., 1], atol=2)
    vocabulary = tft.TFTransformOutput(output_dir).vocabulary_by_name(features.LABEL_VOCABULARY)
    assert sorted(vocabulary) == [b"3", b"7"]
    expected = [vocabulary.index(os.path.basename(os.path.dirname(p)).encode()) for p in paths]
    assert labels == expected


def test_resize_matches_for_lossless_inputs(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    path = tmp_path / "a.png"
    Image.fromarray(image, mode="L").save(path)
    decoded = preprocessing.decode_and_resize(tf.constant([path.read_bytes()]), 32).numpy()[0]
    direct = preprocessing.resize_images(np.repeat(image[None, ..., None], 3, -1), 32).numpy()[0]
    np.testing.assert_allclose(decoded, direct)

"""Registry of keras.applications backbones with the input normalisation each expects."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:  # TensorFlow is imported only when a model is built (config stays light).
    import tensorflow as tf

# `weights` values that name no file: Keras's ImageNet download, and random initialisation.
IMAGENET_WEIGHTS = "imagenet"
NO_WEIGHTS = "none"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A keras.applications architecture usable as a frozen feature extractor.

    Attributes:
      application: attribute of `tf.keras.applications` that builds the model.
      preprocess_module: `tf.keras.applications.<module>` whose `preprocess_input` maps
        [0, 255] RGB to what the ImageNet weights expect; "" when the model normalises inside
        itself (its first layers rescale [0, 255] input).
      min_size: smallest square input the architecture accepts.
    """

    application: str
    preprocess_module: str
    min_size: int

    def build(self, image_size: int, weights: Optional[str]) -> tf.keras.Model:
        import tensorflow as tf

        ctor: Callable = getattr(tf.keras.applications, self.application)
        return ctor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))

    def normalize(self, images):
        """Maps float [0, 255] RGB images to the backbone's expected input range."""
        import tensorflow as tf

        if not self.preprocess_module:
            return images
        module = getattr(tf.keras.applications, self.preprocess_module)
        return module.preprocess_input(images)


# Train-only augmentations `model.build_model` can put in front of any backbone.
AUGMENTATIONS = ("flip", "rotation", "zoom", "translation")

BACKBONES = {
    # Normalisation inside the model (include_preprocessing / Rescaling layers).
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "", 32),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "", 32),
    "efficientnet_b0": Backbone("EfficientNetB0", "", 32),
    "efficientnet_b1": Backbone("EfficientNetB1", "", 32),
    "efficientnet_b2": Backbone("EfficientNetB2", "", 32),
    "efficientnet_b3": Backbone("EfficientNetB3", "", 32),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", "", 32),
    "convnext_tiny": Backbone("ConvNeXtTiny", "", 32),
    # [-1, 1] scaling.
    "mobilenet_v2": Backbone("MobileNetV2", "mobilenet_v2", 32),
    "xception": Backbone("Xception", "xception", 71),
    "inception_v3": Backbone("InceptionV3", "inception_v3", 75),
    # "caffe": BGR with ImageNet mean subtracted.
    "resnet50": Backbone("ResNet50", "resnet50", 32),
    "vgg16": Backbone("VGG16", "vgg16", 32),
}

"""Registry of keras.applications backbones with the input normalisation each expects."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Optional, Tuple

if TYPE_CHECKING:  # TensorFlow is imported only when a model is built (config stays light).
    import tensorflow as tf

# `weights` values that name no file: Keras's ImageNet download, and random initialisation.
IMAGENET_WEIGHTS = "imagenet"
NO_WEIGHTS = "none"
# The width multiplier (`alpha`) of the standard model, the only one a backbone without
# `alphas` is built at; the config's default.
FULL_WIDTH = 1.0


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A keras.applications architecture usable as a frozen feature extractor.

    Attributes:
      application: attribute of `tf.keras.applications` that builds the model.
      preprocess_module: `tf.keras.applications.<module>` whose `preprocess_input` maps
        [0, 255] RGB to what the ImageNet weights expect; "" when the model normalises inside
        itself (its first layers rescale [0, 255] input).
      min_size: smallest square input the architecture accepts.
      alphas: the width multipliers keras.applications publishes ImageNet weights for (and
        so the widths of the standard weights files); empty when the architecture has no
        width multiplier.
    """

    application: str
    preprocess_module: str
    min_size: int
    alphas: Tuple[float, ...] = ()

    def build(self, image_size: int, weights: Optional[str],
              alpha: float = FULL_WIDTH) -> tf.keras.Model:
        """The base without its top at width `alpha`, with `weights` loaded by Keras.

        Raises:
          ValueError: for an `alpha` not in `alphas` (other than FULL_WIDTH), and whatever
            Keras raises when the weights do not load.
        """
        import tensorflow as tf

        if alpha != FULL_WIDTH and alpha not in self.alphas:
            raise ValueError(f"{self.application} cannot be built at alpha {alpha}; "
                             f"its widths: {self.alphas or (FULL_WIDTH,)}")
        width = {"alpha": alpha} if self.alphas else {}
        ctor: Callable = getattr(tf.keras.applications, self.application)
        return ctor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
                    **width)

    def normalize(self, images):
        """Maps float [0, 255] RGB images to the backbone's expected input range."""
        import tensorflow as tf

        if not self.preprocess_module:
            return images
        module = getattr(tf.keras.applications, self.preprocess_module)
        return module.preprocess_input(images)


# Train-only augmentations `model.build_model` can put in front of any backbone.
AUGMENTATIONS = ("flip", "rotation", "zoom", "translation", "contrast", "brightness")
# The heads `model.build_model` puts on the pooled features.
HEADS = ("dense", "linear")

# The values keras.applications accepts with ImageNet weights, per MobileNet version.
_MOBILENET_V1_ALPHAS = (0.25, 0.5, 0.75, 1.0)
_MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
_MOBILENET_V3_ALPHAS = (0.75, 1.0)

BACKBONES = {
    # Normalisation inside the model (include_preprocessing / Rescaling layers).
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "", 32, _MOBILENET_V3_ALPHAS),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "", 32, _MOBILENET_V3_ALPHAS),
    "efficientnet_b0": Backbone("EfficientNetB0", "", 32),
    "efficientnet_b1": Backbone("EfficientNetB1", "", 32),
    "efficientnet_b2": Backbone("EfficientNetB2", "", 32),
    "efficientnet_b3": Backbone("EfficientNetB3", "", 32),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", "", 32),
    "convnext_tiny": Backbone("ConvNeXtTiny", "", 32),
    # [-1, 1] scaling.
    "mobilenet": Backbone("MobileNet", "mobilenet", 32, _MOBILENET_V1_ALPHAS),
    "mobilenet_v2": Backbone("MobileNetV2", "mobilenet_v2", 32, _MOBILENET_V2_ALPHAS),
    "xception": Backbone("Xception", "xception", 71),
    "inception_v3": Backbone("InceptionV3", "inception_v3", 75),
    # "caffe": BGR with ImageNet mean subtracted.
    "resnet50": Backbone("ResNet50", "resnet50", 32),
    "vgg16": Backbone("VGG16", "vgg16", 32),
}

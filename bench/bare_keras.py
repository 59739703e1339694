"""The p1 baseline: the two-phase fine-tune as a tutorial would write it in bare Keras
(tf.data + decode_png, the pipeline's architecture, split sizes, epochs and batch size).

    .venv/bin/python bench/bare_keras.py ROOT WEIGHTS OUT_DIR [--phase1-epochs 5] ...
"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf_keras, as the project uses

import argparse
import glob
import random

import tensorflow as tf

p = argparse.ArgumentParser()
p.add_argument("data"); p.add_argument("weights"); p.add_argument("out")
for flag, default in [("image-size", 32), ("batch-size", 32), ("phase1-epochs", 5),
                      ("phase2-epochs", 5), ("unfreeze-layers", 10), ("head-units", 1024)]:
    p.add_argument(f"--{flag}", type=int, default=default)
p.add_argument("--learning-rate", type=float, default=1e-3)
p.add_argument("--skip-keras-autograph", action="store_true",
               help="the pipeline's AutoGraph rule (components/model.py): tf_keras' own code is "
                    "not converted when Keras traces the model")
args = p.parse_args()
if args.skip_keras_autograph:
    from tensorflow.python.autograph.core import config as autograph_config
    autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"),) + tuple(
        autograph_config.CONVERSION_RULES)
tf.keras.utils.set_random_seed(42)
shape = (args.image_size, args.image_size, 3)

classes = sorted(os.listdir(args.data))
paths = sorted(glob.glob(os.path.join(args.data, "*", "*.png")))
random.Random(42).shuffle(paths)
labels = [classes.index(os.path.basename(os.path.dirname(path))) for path in paths]

def load(path, label):
    image = tf.io.decode_png(tf.io.read_file(path), channels=3)
    return tf.image.resize(image, shape[:2]), label

def dataset(lo, hi, shuffle=False):
    ds = tf.data.Dataset.from_tensor_slices((paths[lo:hi], labels[lo:hi]))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(10_000)
    return ds.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)

n = len(paths)  # 80/10/10
train, val, test = dataset(0, n * 8 // 10, True), dataset(n * 8 // 10, n * 9 // 10), dataset(n * 9 // 10, n)

base = tf.keras.applications.MobileNetV3Small(include_top=False, weights=args.weights, input_shape=shape)
base.trainable = False
inputs = tf.keras.Input(shape)
x = tf.keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
x = tf.keras.layers.Dropout(0.2)(tf.keras.layers.Dense(args.head_units, activation="relu")(x))
model = tf.keras.Model(inputs, tf.keras.layers.Dense(len(classes), activation="softmax")(x))

def compile_and_fit(learning_rate, initial_epoch, epochs):
    model.compile(tf.keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(train, validation_data=val, initial_epoch=initial_epoch, epochs=epochs, verbose=2)

print("phase 1", flush=True)
compile_and_fit(args.learning_rate, 0, args.phase1_epochs)
base.trainable = True
for layer in base.layers[:len(base.layers) - args.unfreeze_layers]:
    layer.trainable = False
for layer in base.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        layer.trainable = False
print("phase 2", flush=True)
compile_and_fit(args.learning_rate / 100, args.phase1_epochs, args.phase1_epochs + args.phase2_epochs)
print("test accuracy", model.evaluate(test, verbose=0)[1], flush=True)
model.save(args.out, save_format="tf")
print("saved", args.out, flush=True)

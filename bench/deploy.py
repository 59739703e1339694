"""Issue 21 part 1: the demo's model as TFLite float32, float16 and int8, against its SavedModel.

Run it where `finetune demo` has completed (any `--tflite` setting), with the same workspace:

    cd <clone> && nice -n 15 .venv/bin/python bench/deploy.py [--workspace workspace]

It converts the demo run's trained model (the Trainer's SavedModel, loaded as the Keras model it
was saved from) in each mode with the pipeline's own code (`components.tflite.convert`, int8
calibrated on the first 200 train images as in the Trainer) and evaluates each with
`components.tflite.evaluate`, the TFLiteCheck's function, on the run's test split. It merges
into bench/results/deploy.json (other keys, e.g. `bulk_images_per_s`, are kept):
- `savedmodel_accuracy`;
- per mode: `accuracy`, `top1_agreement` (share of test images with the SavedModel's top-1),
  `size_ratio` (TFLite bytes ÷ the SavedModel's `variables/` bytes), `size_bytes`,
  `latency_ms` (median interpreter call per image, one thread);
- `savedmodel_variables_bytes` and `float32_parameter_bytes` (4 bytes per model weight: the
  variables also hold the optimizer's slots), `int8_goal_met` (within 1 point of the
  SavedModel's accuracy at at most 1/3 of its size).
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
DEPLOY_JSON = os.path.join(BENCH, "results", "deploy.json")
sys.path.insert(0, BENCH)


def _tree_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="workspace")
    parser.add_argument("--output", default=DEPLOY_JSON)
    args = parser.parse_args()
    from tfx_finetune.commands.run import RUN_SUMMARY_FILE

    summary_path = os.path.join(args.workspace, RUN_SUMMARY_FILE)
    if not os.path.exists(summary_path):
        sys.exit(f"no completed demo run in {args.workspace}: run `finetune demo` first")
    with open(summary_path) as f:
        summary = json.load(f)

    import numpy as np
    import tensorflow as tf

    import tfx_finetune.components  # noqa: F401  (the Keras choice, before models load)
    from perf_results import merge_and_print
    from tfx_finetune.components import features, labels, signatures, splits, tflite

    model_dir, examples_uri = summary["model_dir"], summary["examples_uri"]
    model = tf.keras.models.load_model(model_dir, compile=False)
    image_size = int(model.input_shape[1])
    transform = tf.saved_model.load(model_dir).signatures[signatures.TRANSFORM_FEATURES]
    train = splits.first_records(splits.split_files(examples_uri, splits.TRAIN),
                                 tflite.REPRESENTATIVE_IMAGES)
    representative = transform(examples=tf.constant(train))[
        features.transformed_name(features.IMAGE_KEY)].numpy()
    class_names = labels.vocabulary(model_dir)
    test = [record.numpy()
            for record in splits.records(splits.split_files(examples_uri, splits.TEST))]
    variables_bytes = _tree_bytes(os.path.join(model_dir, "variables"))
    results = {"savedmodel_variables_bytes": variables_bytes,
               "float32_parameter_bytes": 4 * int(sum(np.prod(v.shape) for v in model.variables)),
               "test_images": len(test), "demo_run": summary["run_id"], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in tflite.CONVERSIONS:
            path = tflite.convert(model, image_size, mode, os.path.join(tmp, mode), class_names,
                                  representative)
            evaluation = tflite.evaluate(path, model_dir, iter(test))
            results["savedmodel_accuracy"] = evaluation.savedmodel_accuracy
            results[mode] = dict(
                {k: v for k, v in dataclasses.asdict(evaluation).items()
                 if k not in ("images", "savedmodel_accuracy")},
                size_ratio=evaluation.size_bytes / variables_bytes)
    int8 = results["int8"]
    results["int8_goal_met"] = bool(
        int8["accuracy"] >= results["savedmodel_accuracy"] - 0.01 and int8["size_ratio"] <= 1 / 3)
    merge_and_print(results, args.output,
                    shown=("savedmodel_accuracy", *tflite.CONVERSIONS, "int8_goal_met"))


if __name__ == "__main__":
    main()

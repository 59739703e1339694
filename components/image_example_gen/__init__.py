"""Image ExampleGen: image folders, CSV manifests or TFRecords to checked tf.Example records."""

# Beside the splits in the Examples artifact: what ingestion accepted, rejected and skipped.
REPORT_DIR = "ingestion"
SUMMARY_FILE = "summary.json"

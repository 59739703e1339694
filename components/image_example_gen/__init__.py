"""Image ExampleGen: image folders, CSV manifests or TFRecords to checked tf.Example records."""

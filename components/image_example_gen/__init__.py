"""Image-folder ExampleGen: <root>/<class>/<image> to tf.Example records."""

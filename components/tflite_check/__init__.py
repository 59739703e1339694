"""TFLite evaluation before publishing: the interpreter on the test split, against the SavedModel."""

"""Before publishing: the TFLite interpreter on the test split, against the SavedModel."""

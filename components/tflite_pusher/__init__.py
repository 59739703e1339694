"""Publishes the checked TFLite model beside the SavedModel version the AtomicPusher published."""

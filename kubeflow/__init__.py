"""Kubeflow Pipelines v2: compile the one DAG (Trainer on GPU), the image, submit and schedule."""

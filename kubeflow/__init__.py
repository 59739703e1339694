"""Kubeflow Pipelines v2: compiles the one `create_pipeline` DAG (Trainer on GPU), the pipeline image, submit and schedule."""

"""Telling object-store URIs (gs://, s3://) from local paths."""


def is_uri(path: str) -> bool:
    """True for object-store URIs (gs://, s3://), which have no atomic rename and no links."""
    return "://" in path

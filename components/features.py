"""Feature keys, raw and transformed, in one place."""

IMAGE_KEY = "image"
LABEL_KEY = "label"
PATH_KEY = "path"
LABEL_VOCABULARY = "label_vocabulary"


def transformed_name(key: str) -> str:
    """The only way to derive a transformed feature's name from its raw key."""
    return f"{key}_xf"

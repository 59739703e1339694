"""Content digests of directory trees (caching fingerprints, publish deduplication)."""
from __future__ import annotations

import hashlib
import os


def directory_digest(path: str) -> str:
    """SHA-256 over every file's relative path and content under `path` (local or URI).

    Symbolic links are never followed: a link contributes its target's name, not the
    target's content, so nothing outside `path` is opened. Nor are special files (a FIFO would
    block the read): they contribute their name only.
    """
    if "://" in path:
        return _uri_digest(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        prefix = os.path.relpath(root, path) + os.sep if root != path else ""
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(root, d))):
            full = os.path.join(root, name)
            digest.update((prefix + name).encode("utf-8") + b"\0")
            if os.path.islink(full):
                digest.update(b"link:" + os.readlink(full).encode("utf-8"))
                continue
            if not os.path.isfile(full):
                digest.update(b"special")
                continue
            _update_with_file(digest, full)
            digest.update(b"\0")
    return digest.hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 of one local file's content."""
    digest = hashlib.sha256()
    _update_with_file(digest, path)
    return digest.hexdigest()


def _update_with_file(digest, path: str) -> None:
    """Feeds a local file's content to `digest` in 1 MiB chunks."""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)


def _uri_digest(path: str) -> str:
    """`directory_digest` for object stores (gs://, s3://), which have no links."""
    import tensorflow as tf

    digest = hashlib.sha256()
    files = sorted(os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path)
                   for name in names)
    for full in files:
        digest.update(os.path.relpath(full, path).encode("utf-8") + b"\0")
        with tf.io.gfile.GFile(full, "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()

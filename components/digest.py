"""Content digests of directory trees (caching fingerprints, publish deduplication)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from tfx_finetune.components.uri import is_uri

READ_AHEAD_THREADS = 4


def directory_digest(path: str) -> str:
    """SHA-256 over every file's relative path and content under `path` (local or URI).

    Symbolic links are never followed: a link contributes its target's name, not the
    target's content, so nothing outside `path` is opened. Nor are special files (a FIFO would
    block the read): they contribute their name only.
    """
    if is_uri(path):
        return _uri_digest(path)
    digest = hashlib.sha256()
    with _read_ahead(path):
        _update_with_folder(digest, path, "")
    return digest.hexdigest()


@contextlib.contextmanager
def _read_ahead(path: str) -> Iterator[None]:
    """Has the kernel fetch the files of `path` and of each of its subfolders, in the order
    the digest reads them, while the digest runs.

    On a cold page cache the digest's one reader waits for every file in turn; these threads'
    open and `posix_fadvise(WILLNEED)` calls keep reads in flight instead, at a small cost per
    cached file (figures in bench/README.md). The digest is unchanged; a platform without
    `posix_fadvise` (macOS) reads as before.
    """
    if not hasattr(os, "posix_fadvise"):
        yield
        return
    with os.scandir(path) as scan:
        folders = [path] + sorted(e.path for e in scan if e.is_dir(follow_symlinks=False))
    done = threading.Event()
    pool = ThreadPoolExecutor(READ_AHEAD_THREADS, thread_name_prefix="read-ahead")
    for folder in folders:
        pool.submit(_advise_folder, folder, done)
    try:
        yield
    finally:
        done.set()
        pool.shutdown(cancel_futures=True)


def _advise_folder(folder: str, done: threading.Event) -> None:
    """Starts the kernel reading each regular file directly in `folder` (never a link's
    target), until `done`; errors are left for the digest's own reads to report."""
    try:
        with os.scandir(folder) as scan:
            paths = sorted(e.path for e in scan if e.is_file(follow_symlinks=False))
    except OSError:
        return
    for file_path in paths:
        if done.is_set():
            return
        try:
            fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


def _update_with_folder(digest, folder: str, prefix: str) -> None:
    """Feeds `folder` in `os.walk`'s top-down order: its files and links to folders by name,
    then each real subfolder. One `os.scandir` per folder: the entries carry their type."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    subfolders = [e for e in entries if e.is_dir()]
    for entry in [e for e in entries if not e.is_dir()] + [e for e in subfolders if e.is_symlink()]:
        digest.update((prefix + entry.name).encode("utf-8") + b"\0")
        if entry.is_symlink():
            digest.update(b"link:" + os.readlink(entry.path).encode("utf-8"))
        elif not entry.is_file():
            digest.update(b"special")
        else:
            _update_with_file(digest, entry.path)
            digest.update(b"\0")
    for entry in subfolders:
        if not entry.is_symlink():
            _update_with_folder(digest, entry.path, prefix + entry.name + os.sep)


def file_digest(path: str) -> str:
    """SHA-256 of one local file's content."""
    digest = hashlib.sha256()
    _update_with_file(digest, path)
    return digest.hexdigest()


def _update_with_file(digest, path: str) -> None:
    """Feeds a local file's content to `digest` in 64 KiB chunks (unbuffered: most files here
    are small images, read in one call)."""
    with open(path, "rb", buffering=0) as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
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

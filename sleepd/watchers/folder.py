"""A folder source's files: which are in it (include / exclude globs and .gitignore), which are
binary and skipped (and the list of those, for ``sleepd status``), their content hashes, and what
to say when one cannot be read. The files watcher (:mod:`sleepd.watchers.files`) decides with these.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from pathspec import GitIgnoreSpec

from sleepd import defaults
from sleepd.ledger import Ledger
from sleepd.schema import MetaRow
from sleepd.settings import FileSource

__all__ = ["BINARY_EXTENSIONS", "SKIPPED_META", "Filters", "binary_reason", "content_hash", "describe_error",
           "is_dir", "note_skipped", "skipped_files", "under"]


#: file types that never hold text, by extension: skipped (not failures), and not even opened
BINARY_EXTENSIONS = {
    "image": (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd", ".heic"),
    "audio or video": (".mp3", ".wav", ".ogg", ".flac", ".m4a", ".mp4", ".mov", ".avi", ".mkv", ".webm"),
    "archive": (".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".jar", ".whl", ".zst"),
    "font": (".ttf", ".otf", ".woff", ".woff2", ".eot"),
    "compiled or executable": (".exe", ".dll", ".so", ".dylib", ".o", ".a", ".class", ".pyc", ".pyo", ".wasm"),
    "database": (".db", ".sqlite", ".sqlite3", ".parquet", ".pkl", ".npy", ".npz", ".onnx", ".pt"),
}
_BINARY_KIND = {ext: kind for kind, exts in BINARY_EXTENSIONS.items() for ext in exts}
#: read for their text layer by the worker (``workers.extract.DOCUMENT_SUFFIXES``), NUL bytes or not
_DOCUMENTS = (".pdf", ".docx")
#: bytes looked at for NUL to call a file binary (what git and grep do; as ``workers.items``)
_SNIFF = 8192
#: meta key (+ the source's name) of the source's skipped files: JSON ``{key: reason}``
SKIPPED_META = "skipped/"


def binary_reason(path: Path, size: int, max_bytes: int) -> str | None:
    """Why ``path`` is a binary file and not memory (its extension, or NUL bytes in its first
    8 KiB); None for a text file, a document read for its text, or a file over ``max_bytes`` of
    no binary type (it stays a "too large" failure: someone may want to raise the limit).
    Raises OSError if unreadable."""
    suffix = path.suffix.lower()
    if suffix in _DOCUMENTS:
        return None
    if suffix in _BINARY_KIND:
        return f"binary file ({_BINARY_KIND[suffix]})"
    if size > max_bytes:
        return None
    with open(path, "rb") as fh:
        return "binary file (NUL bytes)" if b"\0" in fh.read(_SNIFF) else None


def skipped_files(ledger: Ledger, source: str) -> dict[str, str]:
    """The files of ``source`` its watcher skips, with the reason, as of its last look at each."""
    with ledger.read() as s:
        row = s.get(MetaRow, SKIPPED_META + source)
    return dict(json.loads(row.value)) if row is not None else {}


def note_skipped(ledger: Ledger, source: str, seen: dict[str, str | None], prefix: str | None) -> None:
    """Record skipped (reason) and no longer skipped (None) keys; with ``prefix``, every key under
    it not in ``seen`` is no longer skipped (a scan of that folder did not find it binary)."""
    before = skipped_files(ledger, source)  # one watcher per source writes it: read, then write if new
    after = {k: v for k, v in before.items() if prefix is None or not under(k, prefix)}
    after.update({k: v for k, v in seen.items() if v is not None})
    for key in (k for k, v in seen.items() if v is None):
        after.pop(key, None)
    if after == before:
        return
    with ledger.write() as s:
        row = s.get(MetaRow, SKIPPED_META + source)
        if row is None:
            s.add(MetaRow(key=SKIPPED_META + source, value=json.dumps(after, sort_keys=True)))
        else:
            row.value = json.dumps(after, sort_keys=True)

def content_hash(path: Path, size: int, max_bytes: int, mtime_ns: int = 0) -> str:
    """sha256 hex of the file's bytes, streamed. A file over ``max_bytes`` is not opened: its hash
    is ``oversize:<size>:<mtime_ns>`` (a rewrite is still a change); the worker records "too large"."""
    if size > max_bytes:
        return f"oversize:{size}:{mtime_ns}"
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def describe_error(exc: OSError, path: Path) -> str:
    """Say what is wrong with the file for ``sleepd status``, not just the errno."""
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link never resolves to a file"
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        with contextlib.suppress(OSError):  # the link itself may vanish meanwhile
            return f"broken symlink: target {os.readlink(path)} does not exist"
        return "broken symlink"
    if isinstance(exc, PermissionError):
        return "permission denied: the file cannot be read"
    return f"cannot read: {exc.strerror or exc}"


def is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # a symlinked folder is never descended
    except OSError:  # vanished since listed; a walk error must not read as a root error
        return False


def under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


class Filters:
    """include / exclude globs, ``defaults.EXCLUDE`` and the root's .gitignore (gitignore syntax)."""

    def __init__(self, source: FileSource, gitignore: Iterable[str]) -> None:
        self.include = GitIgnoreSpec.from_lines(source.include)
        self.exclude = GitIgnoreSpec.from_lines([*defaults.EXCLUDE, *source.exclude, *gitignore])

    def skip_dir(self, rel: str) -> bool:
        return self.exclude.match_file(rel + "/")  # the slash lets "build/" match a folder

    def hides(self, rel: str, is_dir: bool) -> bool:
        """Whether a path not reached by a (pruned) walk is outside the source."""
        parts = rel.split("/")
        if any(self.skip_dir("/".join(parts[:i])) for i in range(1, len(parts))):
            return True
        if is_dir:
            return self.skip_dir(rel)
        # include applies to files only: "*.md" must not prune the folders holding them
        return not self.include.match_file(rel) or self.exclude.match_file(rel)

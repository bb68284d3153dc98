"""The content-addressed cache of builds and mutant sources, under core.cache_dir().

An entry is a directory named by the hash of everything that goes into it. It is
made under a temporary name and published by one rename, its manifest written last:
the full hash of its inputs and the size and hash of each file it holds. Every use
checks the entry against its manifest first, so a missing manifest (an entry cut
short), a truncated or altered file, or an entry of other inputs (a foreign file) is
never used: it is said once, put aside and made again. A cache directory that cannot
be written is an input error naming it (exit 2).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

from qthrottle.core import cache_dir, cache_error, warn

MANIFEST = "manifest.json"
FORMAT = 1  # of the manifest
MISSING = "missing"  # check(): no entry at all (not damage)


def entry_dir(kind: str, inputs: str) -> Path:
    """Where the entry of @kind ("builds") for the inputs hash @inputs lives."""
    return cache_dir() / kind / inputs[:20]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(entry: Path) -> Optional[Dict[str, object]]:
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def check(entry: Path, inputs: str, files: Sequence[str]) -> Optional[str]:
    """None if @entry holds @files made from @inputs, intact; else what is wrong with it
    (MISSING when there is no entry)."""
    if not entry.exists():
        return MISSING
    manifest = _manifest(entry)
    if manifest is None or manifest.get("format") != FORMAT:
        return "incomplete (no readable manifest)"
    if manifest.get("inputs") != inputs:
        return f"foreign (made from inputs {str(manifest.get('inputs'))[:20]}...)"
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return "incomplete (no readable manifest)"
    for name in files:
        record = recorded.get(name)
        path = entry / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"incomplete ({name} is missing)"
        if not isinstance(record, dict) or record.get("size") != size:
            return f"damaged ({name} has {size} bytes, not {(record or {}).get('size')})"
        if record.get("sha256") != file_hash(path):
            return f"damaged ({name} is not the file that was built)"
    return None


def built_from(file: Path) -> Optional[str]:
    """The inputs hash the manifest beside @file records for it, if @file is in an entry."""
    manifest = _manifest(file.parent)
    recorded = manifest.get("files") if manifest else None
    if manifest is None or not isinstance(recorded, dict) or file.name not in recorded:
        return None
    inputs = manifest.get("inputs")
    return inputs if isinstance(inputs, str) else None


def discard(entry: Path, why: str) -> None:
    """Say once why @entry is not used, and remove it (renamed aside first, so that no
    other process meets it half removed)."""
    warn(f"cache entry {entry} is {why}: made again")
    aside = entry.with_name(f".discarded-{entry.name}-{os.getpid()}")
    try:
        entry.rename(aside)
    except OSError:
        return  # another process put it aside first
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staging(kind: str) -> Iterator[Path]:
    """A private directory beside the entries of @kind, removed unless published."""
    parent = cache_dir() / kind
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".new-", dir=parent))
    except OSError as error:
        raise cache_error(Path(error.filename or parent), error) from None
    try:
        yield work
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def publish(work: Path, entry: Path, inputs: str, files: Sequence[str]) -> None:
    """Write @work's manifest, then make it @entry in one rename. If another process
    published @entry meanwhile, its entry is kept when intact (ours is dropped)."""
    manifest = {"format": FORMAT, "inputs": inputs,
                "files": {name: {"size": (work / name).stat().st_size,
                                 "sha256": file_hash(work / name)} for name in files}}
    try:
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        for attempt in range(2):
            try:
                work.rename(entry)
                return
            except OSError:
                problem = check(entry, inputs, files)
                if attempt or problem is None:
                    if problem is None:
                        return  # another process published an intact entry first
                    raise
                if problem != MISSING:
                    discard(entry, problem)
    except OSError as error:
        raise cache_error(Path(error.filename or work), error) from None


def store_file(kind: str, name: str, data: bytes) -> Path:
    """@data as the file @name of a content-addressed entry of @kind, written atomically;
    an existing file that is not @data (cut short, altered) is written again."""
    entry = cache_dir() / kind / hashlib.sha256(data).hexdigest()[:20]
    path = entry / name
    try:
        if path.is_file():
            if path.read_bytes() == data:
                return path
            warn(f"cache file {path} is not what its name says: written again")
        entry.mkdir(parents=True, exist_ok=True)
        partial = entry / f".{name}.{os.getpid()}.tmp"
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as error:
        raise cache_error(Path(error.filename or entry), error) from None
    return path


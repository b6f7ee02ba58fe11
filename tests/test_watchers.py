"""File watchers on real folders, real watchdog events and a real SQLite ledger."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlmodel import col, select

from sleepd.ledger import Ledger
from sleepd.schema import ChangeRow, ItemRow, ItemState, SourceRow
from sleepd.settings import FileSource, Settings, load_settings
from sleepd.watchers import FileWatcher, ScanReport, Watchers
from sleepd.watchers.folder import content_hash
from tests.helpers import wait_for

DEBOUNCE = 0.2

#: watchdog's inotify thread warns when a moved folder keeps its watch (same inode, harmless);
#: under the suite's "error" filter that warning would kill its reader thread
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Env:
    root: Path
    ledger: Ledger
    settings: Settings
    source: FileSource
    watchers: list[FileWatcher] = field(default_factory=list)

    def watcher(self, source: FileSource | None = None, **overrides: Any) -> FileWatcher:
        source = source or self.source
        self.ledger.save_source(source)
        watcher = FileWatcher(source, self.ledger, replace(self.settings, **overrides))
        self.watchers.append(watcher)
        return watcher

    def changes(self, key: str | None = None) -> list[tuple[str, str | None]]:
        """(key, content_hash) of every change row, oldest first."""
        with self.ledger.read() as s:
            query = select(ItemRow.key, ChangeRow.content_hash).where(ItemRow.id == ChangeRow.item_id)
            if key is not None:
                query = query.where(ItemRow.key == key)
            return [(k, h) for k, h in s.exec(query.order_by(col(ChangeRow.id))).all()]

    def present(self, source: str = "docs") -> set[str]:
        """Keys the ledger holds as existing: a recorded deletion stays a pending item (no hash)
        until the worker retracts it."""
        return {k for k, i in self.ledger.known_items(source).items()
                if not (i.state == ItemState.PENDING.value and i.observed_hash is None)}

    def item(self, key: str) -> ItemRow | None:
        with self.ledger.read() as s:
            return s.exec(select(ItemRow).where(ItemRow.key == key)).first()

    def source_row(self, name: str = "docs") -> SourceRow:
        with self.ledger.read() as s:
            row = s.get(SourceRow, name)
        assert row is not None
        return row


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "src"
    root.mkdir()
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    settings = replace(load_settings({"SLEEPD_HOME": str(tmp_path / "home")}),
                       debounce_seconds=DEBOUNCE, rescan_seconds=3600.0)
    e = Env(root, ledger, settings, FileSource(name="docs", path=root))
    yield e
    for watcher in e.watchers:
        watcher.stop()
    ledger.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@contextmanager
def unreadable(path: Path) -> Iterator[bool]:
    """chmod 000, and as root also drop this thread's CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (root
    reads any mode). Yields whether the file (or folder) really is unreadable now."""
    mode = path.stat().st_mode
    os.chmod(path, 0)
    restore = _drop_dac_caps() if os.geteuid() == 0 else None
    try:
        try:
            os.listdir(path) if path.is_dir() else path.read_bytes()
            yield False
        except PermissionError:
            yield True
    finally:
        if restore is not None:
            restore()
        os.chmod(path, mode)


def _drop_dac_caps() -> Callable[[], None] | None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread
        if libc.capget(ctypes.byref(header), data) != 0:
            return None
        saved = data[0].effective
        data[0].effective &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.capset(ctypes.byref(header), data) != 0:
            return None
    except (OSError, AttributeError):
        return None

    def restore() -> None:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)

    return restore


# -- scans -------------------------------------------------------------------------------------


def test_initial_scan_records_every_file_as_pending_change(env: Env) -> None:
    write(env.root / "a.txt", "alpha")
    write(env.root / "sub" / "b.md", "beta")
    write(env.root / "sub" / "deeper" / "c.py", "print('c')")
    changed: list[int] = []
    watcher = env.watcher()
    watcher.on_change = lambda: changed.append(1)
    report = watcher.scan()
    assert (report.seen, report.changed, report.deleted, report.errors, report.hashed) == (3, 3, 0, 0, 3)
    assert sorted(env.changes()) == sorted([("a.txt", sha("alpha")), ("sub/b.md", sha("beta")),
                                            ("sub/deeper/c.py", sha("print('c')"))])
    item = env.item("sub/b.md")
    assert item is not None and item.state == ItemState.PENDING.value and item.size == 4
    assert changed == [1]
    assert env.source_row().last_scan_at is not None and env.source_row().error is None


def test_rescan_of_unchanged_files_records_and_reads_nothing(env: Env) -> None:
    a = write(env.root / "a.txt", "alpha")
    write(env.root / "b.txt", "beta")
    watcher = env.watcher()
    watcher.scan()
    report = watcher.scan()
    assert (report.seen, report.changed, report.hashed) == (2, 0, 0)
    assert len(env.changes()) == 2
    # same size, mtime put back: only a read could notice, and the scan does not read
    st = a.stat()
    a.write_text("ALPHA")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert watcher.scan().hashed == 0
    assert len(env.changes()) == 2


def test_edit_while_not_watching_is_found_by_next_scan(env: Env) -> None:
    a = write(env.root / "a.txt", "alpha")
    watcher = env.watcher()
    watcher.scan()
    a.write_text("alpha, edited")
    report = watcher.scan()
    assert (report.changed, report.hashed) == (1, 1)
    assert env.changes("a.txt") == [("a.txt", sha("alpha")), ("a.txt", sha("alpha, edited"))]


def test_touch_without_new_content_records_no_change(env: Env) -> None:
    a = write(env.root / "a.txt", "alpha")
    watcher = env.watcher()
    watcher.scan()
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = watcher.scan()
    assert (report.changed, report.hashed) == (0, 1)
    assert watcher.scan().hashed == 0  # the ledger took the new mtime: not read again
    assert len(env.changes()) == 1


def test_delete_is_found_by_scan(env: Env) -> None:
    a = write(env.root / "a.txt", "alpha")
    write(env.root / "b.txt", "beta")
    watcher = env.watcher()
    watcher.scan()
    a.unlink()
    report = watcher.scan()
    assert (report.deleted, report.changed) == (1, 0)
    assert env.changes("a.txt")[-1] == ("a.txt", None)
    assert watcher.scan().deleted == 0


def test_deletion_of_enriched_item_is_recorded_once(env: Env) -> None:
    a = write(env.root / "a.txt", "alpha")
    watcher = env.watcher()
    watcher.scan()
    item = env.item("a.txt")
    assert item is not None and item.id is not None
    # the worker's side: publish a version, so the deletion must retract something
    env.ledger.publish_version(item.id, sha("alpha"), "p1", [], np.zeros((0, 4), np.float32), ["*"],
                               env.ledger.last_change_id(item.id))
    a.unlink()
    assert watcher.scan().deleted == 1
    assert watcher.scan().deleted == 0  # still awaiting the worker: not recorded again
    assert env.changes("a.txt") == [("a.txt", sha("alpha")), ("a.txt", None)]


def test_excludes_includes_and_gitignore_are_honoured(env: Env) -> None:
    write(env.root / ".gitignore", "build/\n*.tmp\n!keep.tmp\n")
    for name in ("a.txt", "x.log", "build/out.txt", "t.tmp", "keep.tmp", "node_modules/m.js",
                 ".git/HEAD", "deep/build/o.txt", "docs/d.md"):
        write(env.root / name, name)
    env.watcher(replace(env.source, exclude=("*.log",))).scan()
    assert {k for k, _ in env.changes()} == {".gitignore", "a.txt", "keep.tmp", "docs/d.md"}
    md = FileSource(name="md", path=env.root, include=("*.md",))
    env.watcher(md).scan()
    assert env.ledger.known_items("md").keys() == {"docs/d.md"}


def test_gitignore_and_excludes_apply_to_live_events(env: Env) -> None:
    watcher = env.watcher(replace(env.source, exclude=("*.log",)))
    write(env.root / ".gitignore", "*.tmp\n")
    watcher.scan()
    watcher.start()
    write(env.root / "x.log", "no")
    write(env.root / "y.tmp", "no")
    write(env.root / ".git" / "index", "no")
    write(env.root / "z.txt", "yes")
    wait_for(lambda: env.changes("z.txt"), what="z.txt observed")
    watcher.stop()
    assert {k for k, _ in env.changes()} == {".gitignore", "z.txt"}


def test_oversize_file_is_recorded_without_being_read(env: Env) -> None:
    big = env.root / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(4 << 30)  # sparse 4 GiB: reading it would show
    write(env.root / "small.txt", "small")
    watcher = env.watcher(max_file_bytes=1000)
    with unreadable(big) as locked:
        report = watcher.scan()
    st = big.stat()
    assert env.changes("big.bin") == [("big.bin", f"oversize:{4 << 30}:{st.st_mtime_ns}")]
    assert report.errors == 0  # when unreadable, this proves the scan never opened it
    assert locked or os.geteuid() == 0
    # and content_hash does not even need the file to exist
    assert content_hash(env.root / "missing", 2000, 1000, 7) == "oversize:2000:7"


def test_symlinks_broken_looping_and_to_folders_never_hang(env: Env, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "real.txt", "real")
    write(env.root / "d" / "f.txt", "f")
    (env.root / "link.txt").symlink_to(outside)  # a symlink to a file is read
    (env.root / "broken").symlink_to(env.root / "missing.txt")
    (env.root / "a").symlink_to(env.root / "b")
    (env.root / "b").symlink_to(env.root / "a")
    (env.root / "d" / "up").symlink_to("..")  # a folder loop: never descended
    (env.root / "outdir").symlink_to(outside.parent)
    os.mkfifo(env.root / "pipe")  # reading it would block forever
    watcher = env.watcher()
    report = watcher.scan()
    assert env.changes("link.txt") == [("link.txt", sha("real"))]
    assert env.ledger.known_items("docs").keys() == {"d/f.txt", "link.txt", "broken", "a", "b"}
    errors = {k: (i.state, i.error) for k, i in env.ledger.known_items("docs").items() if i.error}
    assert errors["broken"][0] == ItemState.FAILED.value and "broken symlink" in str(errors["broken"][1])
    assert "symlink loop" in str(errors["a"][1]) and "symlink loop" in str(errors["b"][1])
    assert (report.errors, report.skipped) == (3, 3)
    # the bad links are retried and stay failed, never turning into deletions
    assert watcher.scan().deleted == 0
    (env.root / "broken").unlink()
    assert watcher.scan().deleted == 0  # it never had content: nothing to retract
    assert "broken" not in env.ledger.known_items("docs")


def test_unreadable_file_is_recorded_as_error_then_recovers(env: Env) -> None:
    secret = write(env.root / "secret.txt", "secret")
    write(env.root / "open.txt", "open")
    watcher = env.watcher()
    with unreadable(secret) as locked:
        report = watcher.scan()
    item = env.item("secret.txt")
    assert item is not None
    if not locked:  # root that cannot drop its capabilities reads any mode: the file is simply read
        assert item.observed_hash == sha("secret") and report.errors == 0
        return
    assert (report.errors, report.changed) == (1, 1)
    assert item.state == ItemState.FAILED.value and "permission denied" in str(item.error)
    report = watcher.scan()  # readable again: the failed item is read although size/mtime match
    assert (report.changed, report.hashed) == (1, 1)
    assert env.changes("secret.txt") == [("secret.txt", sha("secret"))]


def test_keys_under_an_unlistable_folder_are_not_deleted(env: Env) -> None:
    write(env.root / "locked" / "x.txt", "x")
    write(env.root / "a.txt", "a")
    watcher = env.watcher()
    watcher.scan()
    with unreadable(env.root / "locked") as locked:
        report = watcher.scan()
    if not locked:
        pytest.skip("running as root without a way to drop CAP_DAC_OVERRIDE")
    assert (report.errors, report.deleted) == (1, 0)
    assert env.present() == {"a.txt", "locked/x.txt"}


def test_missing_root_sets_source_error_and_deletes_nothing(env: Env, tmp_path: Path) -> None:
    write(env.root / "a.txt", "alpha")
    watcher = env.watcher()
    watcher.scan()
    moved = tmp_path / "elsewhere"
    env.root.rename(moved)
    report = watcher.scan()
    assert (report.deleted, report.seen) == (0, 0)
    assert "path does not exist" in str(env.source_row().error)
    assert env.changes() == [("a.txt", sha("alpha"))] and "a.txt" in env.ledger.known_items("docs")
    env.root.write_text("now a file")
    watcher.scan()
    assert "not a directory" in str(env.source_row().error)
    env.root.unlink()
    moved.rename(env.root)
    assert watcher.scan().deleted == 0
    assert env.source_row().error is None


def test_watching_resumes_when_the_root_comes_back(env: Env) -> None:
    write(env.root / "a.txt", "a")
    watcher = env.watcher()
    watcher.scan()
    watcher.start()
    shutil.rmtree(env.root)
    wait_for(lambda: "path does not exist" in str(env.source_row().error), what="source error")
    env.root.mkdir()
    write(env.root / "b.txt", "b")
    watcher.scan()  # the periodic rescan's job: records b.txt and watches the new folder
    assert env.source_row().error is None
    write(env.root / "c.txt", "c")
    wait_for(lambda: env.changes("c.txt"), what="live event in the recreated root")
    assert env.present() == {"b.txt", "c.txt"}


# -- live events -------------------------------------------------------------------------------


def test_live_watcher_sees_create_modify_move_and_delete(env: Env) -> None:
    watcher = env.watcher()
    watcher.scan()
    watcher.start()
    a = write(env.root / "a.txt", "one")
    wait_for(lambda: env.changes("a.txt") == [("a.txt", sha("one"))], what="create")
    a.write_text("two")
    wait_for(lambda: env.changes("a.txt")[-1] == ("a.txt", sha("two")), what="modify")
    a.rename(env.root / "b.txt")
    wait_for(lambda: env.changes("a.txt")[-1] == ("a.txt", None) and env.changes("b.txt"), what="move")
    assert env.changes("b.txt") == [("b.txt", sha("two"))]
    (env.root / "b.txt").unlink()
    wait_for(lambda: env.changes("b.txt")[-1] == ("b.txt", None), what="delete")
    assert env.present() == set()


def test_live_watcher_handles_folder_moves_and_deletes(env: Env, tmp_path: Path) -> None:
    watcher = env.watcher()
    watcher.start()
    write(env.root / "d" / "x.txt", "x")
    write(env.root / "d" / "e" / "y.txt", "y")
    wait_for(lambda: env.present() == {"d/x.txt", "d/e/y.txt"}, what="create")
    (env.root / "d").rename(env.root / "m")
    wait_for(lambda: env.present() == {"m/x.txt", "m/e/y.txt"}, what="move")
    incoming = write(tmp_path / "incoming" / "z.txt", "z").parent
    incoming.rename(env.root / "m" / "in")  # moved in from outside: its files are new
    wait_for(lambda: "m/in/z.txt" in env.present(), what="move in")
    shutil.rmtree(env.root / "m")
    wait_for(lambda: env.present() == set(), what="delete")
    assert sorted(k for k, h in env.changes() if h is None) == ["d/e/y.txt", "d/x.txt", "m/e/y.txt",
                                                                 "m/in/z.txt", "m/x.txt"]


def test_burst_of_writes_gives_one_change(env: Env) -> None:
    a = write(env.root / "a.txt", "start")
    window = 5.0  # wide enough that 20 writes fit in it on any machine, however loaded
    watcher = env.watcher(debounce_seconds=window)
    watcher.scan()
    watcher.start()
    started = time.monotonic()
    for i in range(20):
        a.write_text(f"version {i}")
    assert time.monotonic() - started < window, "the burst must fit the debounce window"
    wait_for(lambda: len(env.changes("a.txt")) > 1, timeout=30, what="the burst observed")
    # a later write to another file, seen after the burst's events: any straggler of the burst
    # would have been observed by then (one observer thread, events in order)
    write(env.root / "later.txt", "after the burst")
    wait_for(lambda: env.changes("later.txt"), timeout=30, what="the later file observed")
    watcher.flush(everything=True)
    assert env.changes("a.txt") == [("a.txt", sha("start")), ("a.txt", sha("version 19"))]


def test_failing_callback_is_logged_and_watching_goes_on(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("callback broke")

    watcher = env.watcher()
    watcher.on_change = boom
    watcher.start()
    with caplog.at_level(logging.ERROR, logger="sleepd.watchers"):
        write(env.root / "a.txt", "a")
        wait_for(lambda: env.changes("a.txt"), what="first event")
        write(env.root / "b.txt", "b")
        wait_for(lambda: env.changes("b.txt"), what="second event")
    assert any("on_change failed" in r.message for r in caplog.records)


# -- the set of watchers -----------------------------------------------------------------------


def test_watchers_scan_start_add_and_rescan(env: Env, tmp_path: Path) -> None:
    other_root = tmp_path / "other"
    write(env.root / "a.txt", "a")
    write(other_root / "o.txt", "o")
    other = FileSource(name="other", path=other_root)
    for source in (env.source, other):
        env.ledger.save_source(source)
    calls: list[int] = []
    watchers = Watchers([env.source], env.ledger, replace(env.settings, rescan_seconds=0.2),
                        on_change=lambda: calls.append(1))
    try:
        reports = watchers.scan_all()
        assert set(reports) == {"docs"} and isinstance(reports["docs"], ScanReport)
        assert reports["docs"].changed == 1 and calls == [1]
        watchers.start()
        assert watchers.add(other).changed == 1 and "other" in watchers
        write(other_root / "live.txt", "live")
        wait_for(lambda: "live.txt" in env.present("other"), what="added source watched")
        watchers.stop()
        write(env.root / "late.txt", "late")  # not watching: only a rescan finds it
        stop = threading.Event()
        loop = threading.Thread(target=watchers.run_rescans, args=(stop,))
        loop.start()
        wait_for(lambda: "late.txt" in env.present(), what="rescan")
        stop.set()
        loop.join(timeout=5)
        assert not loop.is_alive()
        watchers.remove("other")
        assert "other" not in watchers
    finally:
        watchers.stop()

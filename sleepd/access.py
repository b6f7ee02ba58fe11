"""Who may read an item: its source's access list, or the list of the first of the source's path
globs (``access_paths``) that matches its path. Used where records get their list (the worker,
an access change) and where an item without records is checked (history).

An sql source whose readers come from its rows (``access_column``, ``access_lookup``) has no list
here: :meth:`AccessRules.of` says None, and the rows decide."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from pathspec import GitIgnoreSpec

from sleepd.errors import BadRequest
from sleepd.settings import FileSource, Source, SqlSource, access_paths

__all__ = ["AccessRules", "access_event", "access_for", "access_rules", "event_item", "same_access", "with_access"]

#: an index event that rewrites the access payload of one item's points: ``item:<id>``
_EVENT_PREFIX = "item:"


@dataclass(frozen=True)
class AccessRules:
    """A source's access, compiled: globs in order, then the source's list."""

    #: None: each item's rows carry its readers
    default: tuple[str, ...] | None
    globs: tuple[tuple[GitIgnoreSpec, tuple[str, ...]], ...] = ()

    def of(self, key: str) -> tuple[str, ...] | None:
        """The readers of the item at ``key`` (a path relative to the source's folder)."""
        for spec, readers in self.globs:
            if spec.match_file(key):
                return readers
        return self.default


@lru_cache(maxsize=64)
def access_rules(source: Source) -> AccessRules:
    if isinstance(source, SqlSource):
        per_row = source.access_column is not None or source.access_lookup is not None
        return AccessRules(None if per_row else source.access)
    assert isinstance(source, FileSource)
    # gitignore syntax, as the source's include and exclude globs: "private/**", "*.key", "hr/"
    return AccessRules(source.access, tuple((GitIgnoreSpec.from_lines([glob]), readers)
                                            for glob, readers in source.access_paths))


def access_for(source: Source, key: str) -> tuple[str, ...] | None:
    """The readers of ``key`` in ``source``; None where the item's rows say (an sql access column)."""
    return access_rules(source).of(key)


def access_event(item_id: int) -> str:
    """The ``record_id`` of an index event that rewrites an item's access payload (never a UUID)."""
    return f"{_EVENT_PREFIX}{item_id}"


def event_item(record_id: str) -> int | None:
    """The item of an access event; None for a record's event."""
    return int(record_id.removeprefix(_EVENT_PREFIX)) if record_id.startswith(_EVENT_PREFIX) else None


def with_access(source: Source, access: object, paths: object = None) -> Source:
    """``source`` with a new access list and, unless ``paths`` is None, new path globs (a mapping of
    glob to readers, in order; empty: none). BadRequest says why it cannot have them."""
    if (not isinstance(access, list | tuple) or not access
            or not all(isinstance(a, str) and a.strip() for a in access)):
        raise BadRequest("'access' must be a non-empty list of principals or groups (\"*\": any token); "
                         f"got {access!r}")
    readers = tuple(a.strip() for a in access)
    if isinstance(source, SqlSource):
        if source.access_column or source.access_lookup:
            where = source.access_column or "its access lookup table"
            raise BadRequest(f"source {source.name!r} takes each item's readers from {where}: change them there")
        if paths:
            raise BadRequest(f"source {source.name!r} is an sql source: access per path glob is for files sources")
        return replace(source, access=readers)
    if paths is None:
        return replace(source, access=readers)
    try:
        rules = access_paths(paths)
    except ValueError as exc:
        raise BadRequest(f"'paths' {exc}") from None
    return replace(source, access=readers, access_paths=rules)


def same_access(a: Source, b: Source) -> bool:
    """Whether two declarations of a source give every item the same readers."""
    return access_rules(a).default == access_rules(b).default and \
        getattr(a, "access_paths", ()) == getattr(b, "access_paths", ())

"""One typed settings object, built once from the TOML file and ``SLEEPD_*`` variables.

Precedence: environment over file over defaults. A bad value stops start-up with a message
that names the key and the value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sleepd import defaults
from sleepd.errors import ConfigError

__all__ = ["FileSource", "Settings", "load_settings", "source_from_path"]

PROFILES = ("auto", "code", "docs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class FileSource:
    """A watched folder."""

    name: str
    path: Path
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    profile: str = "auto"
    #: principals and groups allowed to read what is derived from this source; "*" = any token
    access: tuple[str, ...] = ("*",)
    kind: str = "files"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "path": str(self.path), "include": list(self.include),
            "exclude": list(self.exclude), "profile": self.profile, "access": list(self.access),
        }


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    qdrant_url: str | None = None
    config_path: Path | None = None
    api_host: str = defaults.API_HOST
    api_port: int = defaults.API_PORT
    #: where the CLI reaches a running daemon (defaults to http://api_host:api_port)
    api_url: str | None = None
    #: the CLI's token; the daemon writes an admin token to home/token for local use
    token: str | None = None
    idle_seconds: float = defaults.IDLE_SECONDS
    debounce_seconds: float = defaults.DEBOUNCE_SECONDS
    rescan_seconds: float = defaults.RESCAN_SECONDS
    max_file_bytes: int = defaults.MAX_FILE_BYTES
    lease_seconds: float = defaults.LEASE_SECONDS
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    tokenizer: str = defaults.TOKENIZER
    #: run a Celery worker as a child of the daemon (the embedded default); off for a team
    embedded_worker: bool = True
    sources: tuple[FileSource, ...] = field(default_factory=tuple)

    @property
    def base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def with_source(self, source: FileSource) -> Settings:
        others = tuple(s for s in self.sources if s.name != source.name)
        return replace(self, sources=(*others, source))

    def child_env(self) -> dict[str, str]:
        """Environment that makes a child process (the embedded worker) load these settings."""
        env = {
            "SLEEPD_HOME": str(self.home), "SLEEPD_DATABASE_URL": self.database_url,
            "SLEEPD_BROKER_URL": self.broker_url, "SLEEPD_LEASE_SECONDS": str(self.lease_seconds),
            "SLEEPD_MAX_FILE_BYTES": str(self.max_file_bytes),
        }
        if self.config_path is not None:
            env["SLEEPD_CONFIG"] = str(self.config_path)
        return env


def _typed(key: str, raw: Any, kind: type) -> Any:
    """Coerce one value, or stop with a message naming the key and the value."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"Config '{key}' has value {raw!r}. Not a valid bool.")
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Not a valid {kind.__name__}.") from None
    if kind in (int, float) and value < 0:
        raise ConfigError(f"Config '{key}' has value {raw!r}. Must not be negative.")
    return value


_SCALARS: dict[str, type] = {
    "database_url": str, "broker_url": str, "qdrant_url": str, "api_host": str, "api_port": int,
    "api_url": str, "token": str, "idle_seconds": float, "debounce_seconds": float,
    "rescan_seconds": float, "max_file_bytes": int, "lease_seconds": float, "max_in_flight": int,
    "tokenizer": str, "embedded_worker": bool,
}


def _str_list(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Must be a list of strings.")
    return tuple(raw)


def _source(index: int, raw: Any, base: Path) -> FileSource:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"Config '{where}' has value {raw!r}. Must be a table.")
    unknown = set(raw) - {"name", "kind", "path", "include", "exclude", "profile", "access"}
    if unknown:
        raise ConfigError(f"Config '{where}' has unknown keys {sorted(unknown)}.")
    kind = raw.get("kind", "files")
    if kind != "files":
        raise ConfigError(f"Config '{where}.kind' has value {kind!r}. Supported: 'files'.")
    if "path" not in raw:
        raise ConfigError(f"Config '{where}.path' is missing.")
    path = (base / str(raw["path"])).expanduser()
    name = str(raw.get("name") or path.name)
    source = FileSource(name=name, path=path.resolve())
    if "include" in raw:
        source = replace(source, include=_str_list(f"{where}.include", raw["include"]))
    if "exclude" in raw:
        source = replace(source, exclude=_str_list(f"{where}.exclude", raw["exclude"]))
    if "access" in raw:
        source = replace(source, access=_str_list(f"{where}.access", raw["access"]))
    if "profile" in raw:
        source = replace(source, profile=str(raw["profile"]))
    return check_source(source, where)


def check_source(source: FileSource, where: str = "source") -> FileSource:
    if not _NAME.match(source.name):
        raise ConfigError(f"Config '{where}.name' has value {source.name!r}. Use letters, digits, '_.-'.")
    if source.profile not in PROFILES:
        raise ConfigError(f"Config '{where}.profile' has value {source.profile!r}. One of {PROFILES}.")
    if not source.access:
        raise ConfigError(f"Config '{where}.access' is empty: nobody could read this source.")
    return source


def source_from_path(path: str | Path, name: str | None = None, profile: str = "auto",
                     access: tuple[str, ...] = ("*",)) -> FileSource:
    """A files source for a folder named on the command line."""
    resolved = Path(path).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or resolved.name).strip("-.") or "files"
    return check_source(FileSource(name=slug, path=resolved, profile=profile, access=access))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"Config file {path} cannot be read: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None


def _find_config(env: Mapping[str, str], home: Path) -> Path | None:
    if env.get("SLEEPD_CONFIG"):
        return Path(env["SLEEPD_CONFIG"])
    for candidate in (Path.cwd() / defaults.CONFIG_NAME, home / defaults.CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``SLEEPD_*`` variables and the config file they point to."""
    env = os.environ if env is None else env
    home = Path(env.get("SLEEPD_HOME") or defaults.HOME).expanduser().resolve()
    config_path = _find_config(env, home)
    data = _read_toml(config_path) if config_path else {}
    top = dict(data.get("sleepd", {}))
    unknown = set(top) - set(_SCALARS) - {"home"}
    if unknown:
        raise ConfigError(f"Config file {config_path} has unknown keys in [sleepd]: {sorted(unknown)}.")
    if "home" in top and not env.get("SLEEPD_HOME"):
        home = Path(str(top["home"])).expanduser().resolve()
    values: dict[str, Any] = {}
    for key, kind in _SCALARS.items():
        raw = env.get(f"SLEEPD_{key.upper()}", top.get(key))
        if raw is not None and raw != "":
            values[key] = _typed(key, raw, kind)
    values.setdefault("database_url", f"sqlite:///{home / 'ledger.db'}")
    values.setdefault("broker_url", "filesystem://")
    base = config_path.parent if config_path else Path.cwd()
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(f"Config 'sources' has value {raw_sources!r}. Use [[sources]] tables.")
    sources = tuple(_source(i, raw, base) for i, raw in enumerate(raw_sources))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"Config 'sources' repeats a name: {names}.")
    return Settings(home=home, config_path=config_path, sources=sources, **values)

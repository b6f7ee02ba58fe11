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
from sleepd.sql.config import (
    SOURCE_NAME,
    SqlAccessLookup,
    SqlSource,
    SqlTable,
    check_sql_source,
    installed_driver,
    sql_source,
    sql_source_from_toml,
    str_list,
    typed_value,
)

__all__ = ["FileSource", "Settings", "Source", "SqlAccessLookup", "SqlSource", "SqlTable", "check_sql_source",
           "load_settings", "source_from_path", "sql_source"]



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
    #: access per path glob (gitignore syntax, like include), in order: the first glob matching an
    #: item's path gives its readers; an item no glob matches has ``access``
    access_paths: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "path": str(self.path), "include": list(self.include),
            "exclude": list(self.exclude), "profile": self.profile, "access": list(self.access),
            "access_paths": [[glob, list(access)] for glob, access in self.access_paths],
        }


Source = FileSource | SqlSource


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
    #: a change older than this is enriched however busy the machine is (see source_staleness)
    max_staleness_seconds: float = defaults.MAX_STALENESS_SECONDS
    #: per-source overrides of max_staleness_seconds: (source name, seconds) pairs from the TOML
    source_staleness: tuple[tuple[str, float], ...] = ()
    #: the files sources whose TOML table has no ``access`` nor ``access_paths``: at start they keep
    #: the lists an admin set (``sleepd sources access``) instead of going back to the default "*"
    access_undeclared: tuple[str, ...] = ()
    #: load average per core at or above which the machine counts as busy
    busy_load_per_core: float = defaults.BUSY_LOAD_PER_CORE
    debounce_seconds: float = defaults.DEBOUNCE_SECONDS
    rescan_seconds: float = defaults.RESCAN_SECONDS
    max_file_bytes: int = defaults.MAX_FILE_BYTES
    lease_seconds: float = defaults.LEASE_SECONDS
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    tokenizer: str = defaults.TOKENIZER
    #: "auto" (onnx when onnxruntime works, else torch), "onnx" or "torch": the same vectors either way
    embed_backend: str = defaults.EMBED_BACKEND
    #: where the model's ONNX export is cached, shared by every home of this user
    model_cache: str = defaults.MODEL_CACHE
    #: run a Celery worker as a child of the daemon (the embedded default); off for a team
    embedded_worker: bool = True
    #: the command line of the embedded worker (default: this Python running `sleepd worker`)
    worker_command: str | None = None
    sources: tuple[Source, ...] = field(default_factory=tuple)
    #: the optional LLM layer: any OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) and model
    llm_base_url: str | None = None
    llm_model: str | None = None
    #: also SLEEPD_LLM_API_KEY; kept out of repr, logs and status
    llm_api_key: str | None = field(default=None, repr=False)
    #: hard token budgets per UTC day (prompt + completion), all sources and per source
    llm_daily_tokens: int = defaults.LLM_DAILY_TOKENS
    llm_source_daily_tokens: int = defaults.LLM_SOURCE_DAILY_TOKENS
    llm_timeout_seconds: float = defaults.LLM_TIMEOUT_SECONDS
    llm_price_per_1k_input: float = defaults.LLM_PRICE_PER_1K
    llm_price_per_1k_output: float = defaults.LLM_PRICE_PER_1K
    #: query-log rows older than this many days are deleted (0 keeps them); the indexer prunes
    query_log_days: float = defaults.QUERY_LOG_DAYS
    #: old versions whose records are kept per item (0: only the current version's)
    keep_versions: int = defaults.KEEP_VERSIONS
    #: per-source overrides of keep_versions: (source name, count) pairs from the TOML
    source_keep_versions: tuple[tuple[str, int], ...] = ()

    @property
    def llm_enabled(self) -> bool:
        """True when an endpoint and a model are configured (else the deterministic layer only)."""
        return bool(self.llm_base_url and self.llm_model)

    def max_staleness(self, source: str) -> float:
        """How long a change of ``source`` may wait for idle time before it is enriched anyway."""
        return dict(self.source_staleness).get(source, self.max_staleness_seconds)

    def keep_versions_for(self, source: str) -> int:
        """How many old versions of an item of ``source`` keep their records."""
        return dict(self.source_keep_versions).get(source, self.keep_versions)

    @property
    def base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def with_source(self, source: Source) -> Settings:
        others = tuple(s for s in self.sources if s.name != source.name)
        return replace(self, sources=(*others, source))

    @property
    def model_dir(self) -> Path:
        """The shared ONNX export cache (``model_cache``, ``~`` expanded)."""
        return Path(self.model_cache).expanduser()

    @property
    def embedder_dirs(self) -> tuple[Path, Path]:
        """Where this home's processes find the model's export: the shared cache, and the home's
        ``models`` folder when that cannot be written."""
        return self.model_dir, self.home / "models"

    def child_env(self) -> dict[str, str]:
        """Environment that makes a child process (the embedded worker) load these settings."""
        env = {
            "SLEEPD_HOME": str(self.home), "SLEEPD_DATABASE_URL": self.database_url,
            "SLEEPD_BROKER_URL": self.broker_url, "SLEEPD_LEASE_SECONDS": str(self.lease_seconds),
            "SLEEPD_MAX_FILE_BYTES": str(self.max_file_bytes), "SLEEPD_MODEL_CACHE": self.model_cache,
        }
        if self.config_path is not None:
            env["SLEEPD_CONFIG"] = str(self.config_path)
        return env


_SCALARS: dict[str, type] = {
    "database_url": str, "broker_url": str, "qdrant_url": str, "api_host": str, "api_port": int,
    "api_url": str, "token": str, "idle_seconds": float, "max_staleness_seconds": float,
    "busy_load_per_core": float, "debounce_seconds": float,
    "rescan_seconds": float, "max_file_bytes": int, "lease_seconds": float, "max_in_flight": int,
    "tokenizer": str, "embedded_worker": bool, "worker_command": str, "embed_backend": str,
    "model_cache": str,    "llm_base_url": str, "llm_model": str, "llm_api_key": str, "llm_daily_tokens": int,
    "llm_source_daily_tokens": int, "llm_timeout_seconds": float, "llm_price_per_1k_input": float,
    "llm_price_per_1k_output": float, "query_log_days": float, "keep_versions": int,
}


def _source(index: int, raw: Any, base: Path) -> Source:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"Config '{where}' has value {raw!r}. Must be a table.")
    if raw.get("kind") == "sql":
        return _sql_source(where, raw)
    unknown = set(raw) - {"name", "kind", "path", "include", "exclude", "profile", "access", "access_paths"}
    if unknown:
        raise ConfigError(f"Config '{where}' has unknown keys {sorted(unknown)}.")
    kind = raw.get("kind", "files")
    if kind != "files":
        raise ConfigError(f"Config '{where}.kind' has value {kind!r}. Supported: 'files', 'sql'.")
    if "path" not in raw:
        raise ConfigError(f"Config '{where}.path' is missing.")
    path = (base / str(raw["path"])).expanduser()
    name = str(raw.get("name") or path.name)
    source = FileSource(name=name, path=path.resolve())
    if "include" in raw:
        source = replace(source, include=str_list(f"{where}.include", raw["include"]))
    if "exclude" in raw:
        source = replace(source, exclude=str_list(f"{where}.exclude", raw["exclude"]))
    if "access" in raw:
        source = replace(source, access=str_list(f"{where}.access", raw["access"]))
    if "access_paths" in raw:
        try:
            source = replace(source, access_paths=access_paths(raw["access_paths"]))
        except ValueError as exc:
            raise ConfigError(f"Config '{where}.access_paths' {exc}") from None
    if "profile" in raw:
        source = replace(source, profile=str(raw["profile"]))
    return check_source(source, where)


def _sql_source(where: str, raw: dict[str, Any]) -> SqlSource:
    if "access_paths" in raw:
        raise ConfigError(f"Config '{where}.access_paths' is for files sources: an sql source's readers come "
                          "from access, access_column or access_lookup.")
    return sql_source_from_toml(where, raw)


def access_paths(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{glob: [principal or group, ...]}`` in order (a TOML table keeps it), checked: each glob a
    path pattern relative to the source's folder, each list non-empty. ValueError says what is wrong."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"has value {raw!r}. Must be a table of path glob = [readers], such as "
                         "\"private/**\" = [\"legal\"].")
    rules = []
    for glob, readers in raw.items():
        if not isinstance(glob, str) or not glob.strip() or glob.startswith(("/", "!")) or "\\" in glob:
            raise ValueError(f"has glob {glob!r}. Use a path glob relative to the source's folder, with '/', "
                             "such as 'private/**'.")
        if isinstance(readers, str):
            readers = [readers]
        if (not isinstance(readers, list) or not readers
                or not all(isinstance(r, str) and r.strip() for r in readers)):
            raise ValueError(f"has readers {readers!r} for {glob!r}. Name at least one principal or group "
                             "(\"*\" for any token).")
        rules.append((glob, tuple(readers)))
    return tuple(rules)


def check_source(source: FileSource, where: str = "source") -> FileSource:
    if not SOURCE_NAME.match(source.name):
        raise ConfigError(f"Config '{where}.name' has value {source.name!r}. Use letters, digits, '_.-'.")
    if source.profile not in defaults.FILE_PROFILES:
        raise ConfigError(f"Config '{where}.profile' has value {source.profile!r}. One of {defaults.FILE_PROFILES}.")
    if not source.access:
        raise ConfigError(f"Config '{where}.access' is empty: nobody could read this source.")
    return source


def source_from_path(path: str | Path, name: str | None = None, profile: str = "auto",
                     access: tuple[str, ...] = ("*",)) -> FileSource:
    """A files source for a folder named on the command line."""
    resolved = Path(path).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or resolved.name).strip("-.") or "files"
    return check_source(FileSource(name=slug, path=resolved, profile=profile, access=access))


#: settings a [[sources]] table may override for itself: their type and what a value must be
_PER_SOURCE: dict[str, tuple[type, str]] = {"max_staleness_seconds": (float, "positive"),
                                           "keep_versions": (int, "0 or more")}


def _sources(raw_sources: list[Any], base: Path) -> tuple[tuple[Source, ...], dict[str, tuple[tuple[str, Any], ...]]]:
    """The [[sources]] tables, and the per-source overrides taken out of them (max_staleness_seconds,
    keep_versions: the scheduler's and the retention's business, not part of the source's identity
    stored in the ledger)."""
    sources: list[Source] = []
    overrides: dict[str, list[tuple[str, Any]]] = {key: [] for key in _PER_SOURCE}
    for index, raw in enumerate(raw_sources):
        taken: dict[str, Any] = {}
        if isinstance(raw, dict) and set(raw) & set(_PER_SOURCE):
            raw = dict(raw)
            for name, (kind, rule) in _PER_SOURCE.items():
                if name not in raw:
                    continue
                key = f"sources[{index}].{name}"
                value = typed_value(key, raw.pop(name), kind)
                if value is None or value < 0 or (value == 0 and rule == "positive"):
                    raise ConfigError(f"Config '{key}' has value {value!r}. Must be {rule}.")
                taken[name] = value
        source = _source(index, raw, base)
        sources.append(source)
        for name, value in taken.items():
            overrides[name].append((source.name, value))
    return tuple(sources), {key: tuple(pairs) for key, pairs in overrides.items()}


def _check_llm(values: Mapping[str, Any]) -> None:
    """The LLM keys make sense together, or start-up stops naming the key and the value."""
    url = values.get("llm_base_url")
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"Config 'llm_base_url' has value {url!r}. Use an http(s) URL such as "
                          "'http://127.0.0.1:8000/v1'.")
    if url is not None and not values.get("llm_model"):
        raise ConfigError(f"Config 'llm_model' is missing: 'llm_base_url' is {url!r}; name the model to ask.")
    if values.get("llm_timeout_seconds") == 0:
        raise ConfigError("Config 'llm_timeout_seconds' has value 0. Must be positive.")


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
            values[key] = typed_value(key, raw, kind)
    values.setdefault("database_url", f"sqlite:///{home / 'ledger.db'}")
    values["database_url"] = installed_driver(values["database_url"])
    values.setdefault("broker_url", "filesystem://")
    base = config_path.parent if config_path else Path.cwd()
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(f"Config 'sources' has value {raw_sources!r}. Use [[sources]] tables.")
    _check_llm(values)
    if values.get("embed_backend", defaults.EMBED_BACKEND) not in defaults.EMBED_BACKENDS:
        raise ConfigError(f"Config 'embed_backend' has value {values['embed_backend']!r}. "
                          f"Supported: {', '.join(repr(b) for b in defaults.EMBED_BACKENDS)}.")
    if values.get("query_log_days", 0) < 0:
        raise ConfigError(f"Config 'query_log_days' has value {values['query_log_days']!r}. "
                          "Must be 0 (keep the query log) or more days.")
    if values.get("keep_versions", 0) < 0:
        raise ConfigError(f"Config 'keep_versions' has value {values['keep_versions']!r}. "
                          "Must be 0 (keep only the current version's records) or more.")
    if values.get("max_staleness_seconds", 1.0) <= 0:
        raise ConfigError(f"Config 'max_staleness_seconds' has value {values['max_staleness_seconds']!r}. "
                          "Must be positive.")
    sources, overrides = _sources(raw_sources, base)
    values["source_staleness"] = overrides["max_staleness_seconds"]
    values["source_keep_versions"] = overrides["keep_versions"]
    values["access_undeclared"] = tuple(s.name for s, raw in zip(sources, raw_sources, strict=True)
                                        if isinstance(s, FileSource) and not {"access", "access_paths"} & set(raw))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"Config 'sources' repeats a name: {names}.")
    return Settings(home=home, config_path=config_path, sources=sources, **values)

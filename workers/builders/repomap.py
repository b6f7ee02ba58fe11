"""The code aggregates, built from the code enricher's records of a source's files (no file is read).

* :func:`code_graph`: the reference graph between files. An edge A -> B for each module A imports that
  resolves to B (weight :data:`IMPORT_WEIGHT`), and for each name defined at B's top level that A's
  records mention (``sqrt(mentions) / files defining the name``, a tenth for ``_private`` names).
  Files are ranked by PageRank over it; a symbol's rank is the PageRank that flows to it through the
  mentions of its name.
* :func:`render_repo_map`: the most central files with their key symbols' signatures, within a token
  budget; ``REPO_MAP``.
* :func:`package_summary`: one folder of code: modules, entry points, key symbols; ``PACKAGE_SUMMARY``.
* :func:`test_map`: each test file and test function with the symbols it references; ``TEST_MAP``.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sleepd.aggregates import InputRecord, is_test_path, split_rows
from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.code import module_name

__all__ = ["CodeFile", "CodeGraph", "code_graph", "package_summary", "pagerank", "render_repo_map", "test_map"]

#: an import says more about a dependency than one mention of a name
IMPORT_WEIGHT = 2.0
#: PageRank's damping and stopping rule
DAMPING = 0.85
_TOLERANCE = 1e-10
_MAX_ITERATIONS = 200
#: key symbols shown per file in the repository map, at most
MAP_SYMBOLS_PER_FILE = 8
#: a test map record holds at most this many characters of lines (lines are kept whole)
TEST_MAP_CHARS = 3000
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPAN = re.compile(r"\s+\[[^\]]*:\d+-\d+\]$")
_ENTRY_FILES = frozenset({"__main__.py", "main.py", "cli.py", "app.py", "main.go", "index.js", "index.ts",
                          "main.rs", "lib.rs", "main.c", "main.cpp"})


@dataclass
class Symbol:
    name: str  # within its module: "Command.invoke"
    title: str  # qualified: "click.core.Command.invoke"
    signature: str
    start: int
    end: int
    doc: str
    rank: float = 0.0


@dataclass
class CodeFile:
    path: str
    module: str
    lines: int
    imports: list[str]
    doc: str
    symbols: list[Symbol]
    mentions: Counter[str]
    rank: float = 0.0
    referenced_by: set[str] = field(default_factory=set)


@dataclass
class CodeGraph:
    files: dict[str, CodeFile]
    #: path -> path -> weight
    edges: dict[str, dict[str, float]]
    #: symbol title -> the files that mention it (other than its own)
    users: dict[str, set[str]]

    def ranked_files(self) -> list[CodeFile]:
        return sorted(self.files.values(), key=lambda f: (-f.rank, f.path))

    def key_symbols(self, path: str, limit: int) -> list[Symbol]:
        """A file's symbols by rank; top-level ones and public ones first among equals. Of overloads
        (one name defined several times) the longest definition stands for them all."""
        longest: dict[str, Symbol] = {}
        for sym in self.files[path].symbols:
            if sym.name not in longest or sym.end - sym.start > longest[sym.name].end - longest[sym.name].start:
                longest[sym.name] = sym
        return sorted(longest.values(), key=lambda s: (-s.rank, "." in s.name, s.name.startswith("_"), s.start))[:limit]


def pagerank(nodes: Sequence[str], edges: dict[str, dict[str, float]], damping: float = DAMPING) -> dict[str, float]:
    """Weighted PageRank by power iteration; a node with no out-edges spreads its rank evenly."""
    n = len(nodes)
    if n == 0:
        return {}
    rank = dict.fromkeys(nodes, 1.0 / n)
    out_weight = {a: sum(targets.values()) for a, targets in edges.items()}
    for _ in range(_MAX_ITERATIONS):
        dangling = sum(rank[a] for a in nodes if not out_weight.get(a))
        new = dict.fromkeys(nodes, (1.0 - damping) / n + damping * dangling / n)
        for a, targets in edges.items():
            if out_weight.get(a):
                for b, w in targets.items():
                    new[b] += damping * rank[a] * w / out_weight[a]
        done = sum(abs(new[x] - rank[x]) for x in nodes) < _TOLERANCE * n
        rank = new
        if done:
            break
    return rank


def _signature(record: InputRecord, local: str) -> str:
    first = record.text.split("\n", 1)[0]
    if "." in local and first.startswith(local + ": "):
        first = first[len(local) + 2:]
    return _SPAN.sub("", first).strip()


def _file_of(path: str, records: Sequence[InputRecord]) -> CodeFile:
    module = module_name(path)
    summary = next((r for r in records if r.kind == "file_summary"), None)
    lines = max((e[2] for r in records for e in r.evidence), default=1)
    imports: list[str] = []
    doc = ""
    if summary is not None:
        body = summary.text.split("\n")
        imports = next((ln[len("Imports: "):].split(", ") for ln in body if ln.startswith("Imports: ")), [])
        prose = (ln for ln in body[1:] if ln.strip().strip("…") and not ln.startswith(("Imports: ", "Defines (", "- ")))
        doc = next(prose, "")
    symbols: list[Symbol] = []
    mentions: Counter[str] = Counter()
    for rec in records:
        mentions.update(_IDENT.findall(rec.text if rec.kind != "file_summary" else ""))
        if rec.kind != "symbol":
            continue
        local = rec.title[len(module) + 1:] if module and rec.title.startswith(module + ".") else rec.title
        start, end = (rec.evidence[0][1], rec.evidence[0][2]) if rec.evidence else (1, 1)
        text_lines = rec.text.split("\n")
        symbols.append(Symbol(local, rec.title, _signature(rec, local), start, end,
                              text_lines[1].strip() if len(text_lines) > 1 else ""))
    return CodeFile(path, module, lines, [i for i in imports if i], doc.strip(), symbols, mentions)


def _resolve(name: str, importer: CodeFile, by_module: dict[str, str], by_stem: dict[str, list[str]]) -> str | None:
    """The file an import names, if it is one of ours: Python dotted (relative too), else path-like."""
    if name.startswith("."):
        dots = len(name) - len(name.lstrip("."))
        package = importer.module.split(".") if importer.path.endswith("/__init__.py") or \
            importer.path == "__init__.py" else importer.module.split(".")[:-1]
        package = package[:len(package) - (dots - 1)] if dots > 1 else package
        rest = name[dots:]
        name = ".".join([*package, rest] if rest else package)
    parts = [p for p in name.split(".") if p]
    while parts:  # `from a.b import c`: a.b.c may be a module, else a.b is
        found = by_module.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    if "/" in name:  # JS, C, Go: a path relative to the importer, or to the root
        for candidate in (posixpath.normpath(posixpath.join(posixpath.dirname(importer.path), name)),
                          posixpath.normpath(name)):
            stem = re.sub(r"\.[^./]*$", "", candidate)
            hits = by_stem.get(stem) or by_stem.get(stem + "/index")
            if hits:
                return hits[0]
    return None


def code_graph(records: Sequence[InputRecord]) -> CodeGraph:
    """Parse the files' records, link them, rank files and symbols."""
    per_file: dict[str, list[InputRecord]] = {}
    for rec in records:
        per_file.setdefault(rec.path, []).append(rec)
    files = {p: _file_of(p, recs) for p, recs in sorted(per_file.items())}
    edges, flows, users = _link(files)
    ranks = pagerank(list(files), edges)
    for path, f in files.items():
        f.rank = ranks[path]
        for target in edges[path]:
            files[target].referenced_by.add(path)
    symbol_rank: dict[str, float] = {}
    for path, targets in flows.items():
        total = sum(edges[path].values()) or 1.0
        for title, w in targets.items():
            symbol_rank[title] = symbol_rank.get(title, 0.0) + ranks[path] * w / total
    for f in files.values():
        for sym in f.symbols:
            sym.rank = symbol_rank.get(sym.title, 0.0)
    return CodeGraph(files, edges, users)


Edges = dict[str, dict[str, float]]


def _link(files: dict[str, CodeFile]) -> tuple[Edges, Edges, dict[str, set[str]]]:
    """File -> file edges, file -> symbol flows, and each symbol's users (files other than its own)."""
    by_module = {f.module: f.path for f in files.values() if f.module}
    by_stem: dict[str, list[str]] = {}
    for path in files:
        by_stem.setdefault(re.sub(r"\.[^./]*$", "", path), []).append(path)
    defines: dict[str, list[tuple[str, Symbol]]] = {}
    for f in files.values():
        for sym in f.symbols:
            if "." not in sym.name and not sym.name.startswith("__"):  # a method's or dunder's name says little
                defines.setdefault(sym.name, []).append((f.path, sym))
    edges: Edges = {p: {} for p in files}
    flows: Edges = {p: {} for p in files}
    users: dict[str, set[str]] = {}
    for f in files.values():
        out = edges[f.path]
        for imported in f.imports:
            target = _resolve(imported, f, by_module, by_stem)
            if target is not None and target != f.path:
                out[target] = out.get(target, 0.0) + IMPORT_WEIGHT
        for ident, count in f.mentions.items():
            definers = defines.get(ident, [])
            w = math.sqrt(count) / max(len(definers), 1) * (0.1 if ident.startswith("_") else 1.0)
            for target, sym in definers:
                if target != f.path:
                    out[target] = out.get(target, 0.0) + w
                    flows[f.path][sym.title] = flows[f.path].get(sym.title, 0.0) + w
                    users.setdefault(sym.title, set()).add(f.path)
    return edges, flows, users


def _file_block(graph: CodeGraph, f: CodeFile, n_symbols: int) -> str:
    used = f" — used by {len(f.referenced_by)} file{'s' if len(f.referenced_by) != 1 else ''}" \
        if f.referenced_by else ""
    head = f"{f.path} ({f.lines} lines, rank {f.rank:.3f}{used})"
    lines = [head, *(f"  {f.doc[:160]}" for _ in [0] if f.doc)]
    for sym in graph.key_symbols(f.path, n_symbols):
        label = f"{sym.name}: " if "." in sym.name else ""
        lines.append(f"  {label}{sym.signature[:200]}  [{sym.start}-{sym.end}]")
    return "\n".join(lines)


def render_repo_map(graph: CodeGraph, source: str, budget: int, count: Callable[[str], int]) -> Draft | None:
    """The most central files with their key symbols' signatures, within ``budget`` tokens (``count``)."""
    if not graph.files:
        return None
    n_symbols = sum(len(f.symbols) for f in graph.files.values())
    header = (f"Repository map of source {source}: {len(graph.files)} code files, {n_symbols} symbols; the most "
              "central files first (PageRank over imports and name references), each with its key symbols.")
    blocks: list[str] = []
    listed: list[CodeFile] = []
    used = count(header)
    for f in graph.ranked_files():
        for n in range(MAP_SYMBOLS_PER_FILE, -1, -1):
            block = _file_block(graph, f, n)
            cost = count("\n" + block)
            if used + cost <= budget:
                blocks.append(block)
                listed.append(f)
                used += cost
                break
        else:
            break  # not even its name fits: the map is full
    if not listed:
        return None
    evidence = tuple(Evidence(f.path, 1, f.lines) for f in listed)
    return Draft(RecordKind.REPO_MAP, "\n".join([header, *blocks]), evidence, title=f"Repository map: {source}",
                 meta={"files": str(len(listed))})


def _is_entry(f: CodeFile, sym: Symbol) -> bool:
    return sym.name in ("main", "cli", "run", "app") or posixpath.basename(f.path) in _ENTRY_FILES


def package_summary(graph: CodeGraph, folder: str, paths: Sequence[str]) -> Draft | None:
    """What one folder of code holds: its modules with their purpose, entry points and key symbols."""
    files = [graph.files[p] for p in sorted(paths) if p in graph.files]
    if not files:
        return None
    name = module_name(folder + "/__init__.py") if folder != "." else ""
    where = f"Package {name} ({folder}/)" if name else "The root folder"
    lines = [f"{where}: {len(files)} module{'s' if len(files) != 1 else ''}, "
             f"{sum(len(f.symbols) for f in files)} symbols."]
    lines.append("Modules:")
    for f in sorted(files, key=lambda f: (-f.rank, f.path)):
        top = list(dict.fromkeys(s.name for s in f.symbols if "." not in s.name and not s.name.startswith("_")))[:6]
        lines.append(f"- {posixpath.basename(f.path)}: {f.doc[:120] or 'no docstring'}"
                     + (f" Defines {', '.join(top)}." if top else ""))
    entries = [(f, s) for f in files for s in f.symbols if "." not in s.name and _is_entry(f, s)]
    entry_files = [f.path for f in files if posixpath.basename(f.path) in _ENTRY_FILES]
    if entries or entry_files:
        lines.append("Entry points: " + ", ".join(
            [*(p for p in entry_files), *(f"{s.title} ({f.path}:{s.start})" for f, s in entries[:6])]))
    ranked = sorted(((s, f) for f in files for s in graph.key_symbols(f.path, len(f.symbols))),
                    key=lambda p: (-p[0].rank, p[0].title))[:10]
    if ranked:
        lines.append("Key symbols (most referenced):")
        lines.extend(f"- {s.title}: {s.signature[:160]}  [{f.path}:{s.start}-{s.end}]" for s, f in ranked)
    outside = sorted({u for f in files for u in f.referenced_by if u not in paths})
    if outside:
        lines.append(f"Used by: {', '.join(outside[:12])}")
    evidence = tuple(Evidence(f.path, 1, f.lines) for f in files)
    return Draft(RecordKind.PACKAGE_SUMMARY, "\n".join(lines), evidence, title=f"Package summary: {name or folder}",
                 meta={"folder": folder})


def test_map(graph: CodeGraph, records: Sequence[InputRecord]) -> list[Draft]:
    """Per test file, each test function and the code symbols it references (by name), whole lines,
    split into records of at most :data:`TEST_MAP_CHARS` characters."""
    code_names: dict[str, list[Symbol]] = {}
    for f in graph.files.values():
        if not is_test_path(f.path):
            for sym in f.symbols:
                code_names.setdefault(sym.name.rsplit(".", 1)[-1], []).append(sym)
    drafts: list[Draft] = []
    for f in graph.files.values():
        if not is_test_path(f.path):
            continue
        rows: list[tuple[str, Evidence]] = []
        for rec in records:
            if rec.path != f.path or rec.kind != "symbol" or not rec.evidence:
                continue
            local = rec.title.rsplit(".", 1)[-1]
            if not local.startswith("test") and not local.startswith("Test"):
                continue
            hits = sorted({s.title for ident in set(_IDENT.findall(rec.text)) for s in code_names.get(ident, [])
                           if not ident.startswith("__")})
            if hits:
                _, start, end = rec.evidence[0]
                rows.append((f"- {rec.title} [{f.path}:{start}-{end}] exercises: {', '.join(hits[:20])}",
                             Evidence(f.path, start, end)))
        if rows:
            drafts.extend(_split(f"Tests in {f.path} and the code they exercise:", rows, f.path))
    return drafts


def _split(header: str, rows: list[tuple[str, Evidence]], path: str) -> list[Draft]:
    parts = split_rows(rows, lambda row: row[0], TEST_MAP_CHARS, header)
    return [Draft(RecordKind.TEST_MAP, "\n".join([header, *(r for r, _ in part)]), tuple(e for _, e in part),
                  title=f"Test map: {path}" + (f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""))
            for i, part in enumerate(parts)]

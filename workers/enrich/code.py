"""Deterministic enrichment of source code through tree-sitter: one record per symbol, one per file.

* ``SYMBOL`` per class, function, method (interface, struct, trait, enum...). Title: qualified name
  (``click.core.Command.invoke``; module from the path). Text: signature and span (``def invoke(self,
  ctx)  [click/core.py:1203-1230]``), docstring or leading comment, the body when short; <= ~350
  tokens. Evidence: from the leading comment or decorators to the last line.
* one ``FILE_SUMMARY``: module docstring or header comment, imports, top-level signatures (classes
  with member names). Evidence: the whole file.
* one ``QUESTIONS`` of likely questions about the module (what it is for; what its main public classes
  and functions do and how they are called), answered from docstrings and signatures, each
  pointing at the symbol's lines (:func:`workers.enrich.digest.qa_draft`).

A syntax error, no grammar, > :data:`MAX_LINES` lines or minified text (mean line > :data:`MAX_AVG_LINE`)
give line ``CHUNK`` windows instead, ``meta["fallback"]`` saying why. Never raises on text; no I/O.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import accumulate
from typing import cast

import tree_sitter_language_pack as tslp
from tree_sitter import Language, Node, Parser

from sleepd.languages import EXTENSIONS, language_for
from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.digest import QA, qa_draft, split_sentences
from workers.enrich.docs import chunk_lines, fit_text, trim_lines
from workers.enrich.symbols import DEFS, Ctx, Symbol, collect_symbols, docstring, error_bytes, strip_comment

__all__ = ["EXTENSIONS", "MAX_AVG_LINE", "MAX_ERROR_RATIO", "MAX_LINES", "SUMMARY_TOKENS", "SYMBOL_TOKENS",
           "enrich_code", "language_for", "module_name"]

#: files longer than this are chunked, not parsed (generated code, vendored bundles)
MAX_LINES = 5000
#: a mean line length above this means minified or generated: chunk it
MAX_AVG_LINE = 300
#: past this share of bytes in parse errors, chunk the file; below it (grammar gaps, C macros, one
#: broken function) keep the symbols that parsed cleanly. 0 makes any syntax error chunk the file.
MAX_ERROR_RATIO = 0.05
SYMBOL_TOKENS = 350
SUMMARY_TOKENS = 400
_CHARS = 4  # ~chars per token; sizing only
_DOC_LINES = 60
#: public symbols a module's QUESTIONS record asks about (documented ones first, then classes, then size)
_QA_SYMBOLS = 6
_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement", "import_spec",
                      "import_declaration", "use_declaration", "preproc_include", "using_directive",
                      "namespace_use_declaration", "import_header"})
# where the imported name sits; elsewhere it is the statement's text less its keyword
_IMPORT_FIELD = {"import_statement": "source", "preproc_include": "path", "use_declaration": "argument",
                 "import_spec": "path", "import_from_statement": "module_name"}
_BORING = re.compile(r"copyright|licen[cs]e|spdx|-\*-|coding[:=]", re.IGNORECASE)


def module_name(path: str) -> str:
    """Dotted module name from a root-relative path: ``click/core.py`` -> ``click.core``; a leading
    ``src/`` layout folder is not part of the import name (``src/requests/api.py`` -> ``requests.api``)."""
    parts = [p for p in re.sub(r"\.[^./]*$", "", path.replace("\\", "/")).split("/") if p not in ("", ".")]
    if len(parts) > 1 and parts[0] == "src":
        parts = parts[1:]
    return ".".join(parts[:-1] if parts[-1:] == ["__init__"] else parts)  # a package's __init__ is itself


@cache
def _language(grammar: str) -> Language | None:
    try:
        return tslp.get_language(cast("tslp.SupportedLanguage", grammar))
    except Exception:  # a grammar missing from this build: chunks beat failing the whole item
        return None



def _symbol_text(ctx: Ctx, sym: Symbol) -> str:
    label = f"{sym.name}: " if "." in sym.name else ""  # a method says whose it is
    head = f"{label}{sym.signature}  [{ctx.path}:{sym.start}-{sym.end}]"
    doc = trim_lines(sym.doc, _DOC_LINES)
    fits = 0 < len(sym.body) <= SYMBOL_TOKENS * _CHARS - len(head) - len(doc) - 2
    tail = sym.body if fits else f"Members: {', '.join(sym.members)}" if sym.members else ""
    return fit_text([head, doc, tail], SYMBOL_TOKENS * _CHARS)


def _import_names(node: Node, ctx: Ctx) -> list[str]:
    if node.type == "future_import_statement":
        return ["__future__"]
    if node.type == "call":  # Ruby: require 'x'
        required = ctx.text(node.child_by_field_name("method")) in ("require", "require_relative")
        return [ctx.text(node.child_by_field_name("arguments")).strip("()'\" ")] if required else []
    if ctx.grammar == "python" and node.type == "import_statement":
        return [ctx.text(n.child_by_field_name("name") or n) for n in node.children_by_field_name("name")]
    target = node.child_by_field_name(_IMPORT_FIELD.get(node.type, ""))
    # first line only: a Kotlin import header can swallow the comment below it
    raw = ctx.text(target).strip() if target is not None else ctx.text(node).strip().split("\n")[0]
    raw = re.sub(r"^(?:#\s*include|import|using|use|static|global)\s+", "", raw)
    return [" ".join(raw.split()).rstrip(";").strip("'\"`<>")[:80]]


def _imports(root: Node, ctx: Ctx) -> list[str]:
    """Modules imported at (or near) the top level: ``if``/``try``/namespace blocks are looked into."""
    found: list[str] = []
    stack = [(c, 0) for c in reversed(root.named_children)]
    while stack:
        node, depth = stack.pop()
        # Go's import_declaration only groups import_specs: walk into it
        wrapper = ctx.grammar == "go" and node.type == "import_declaration"
        if (node.type in _IMPORTS and not wrapper) or (ctx.grammar == "ruby" and node.type == "call"):
            found.extend(_import_names(node, ctx))
        elif depth < 3 and node.type not in DEFS[ctx.grammar]:
            stack.extend((c, depth + 1) for c in reversed(node.named_children))
    return list(dict.fromkeys(n for n in found if n))


def _header_doc(root: Node, ctx: Ctx) -> str:
    """Module docstring, else the first comment block at the top that is not a license or pragma."""
    doc, _ = docstring(root, ctx)
    first = next((c for c in root.named_children if "comment" not in c.type), None)
    top = [x for x in ctx.lines[: ctx.line(first.start_byte) - 1 if first else None] if x[:2] != "#!"]
    blocks = [doc, *(strip_comment(b.splitlines()) for b in re.split(r"\n\s*\n", "\n".join(top)))]
    return next((b for b in blocks if b and not _BORING.search(b)), "")


def _summary_text(ctx: Ctx, root: Node, symbols: list[Symbol]) -> str:
    head = f"{ctx.path}: {ctx.grammar} module {module_name(ctx.path)} ({len(ctx.lines)} lines)"
    imports = ", ".join(_imports(root, ctx))
    # public names first: when the budget runs out, `_helpers` are the ones left out
    defs = sorted((s for s in symbols if s.top), key=lambda s: s.name.startswith("_"))
    lines = [head, trim_lines(_header_doc(root, ctx), 12), f"Imports: {imports[:600]}" if imports else ""]
    lines.append(f"Defines ({len(defs)}):" if defs else "")
    for sym in defs:
        members = ", ".join(sym.members)
        members = members if len(members) <= 160 else members[:160].rsplit(", ", 1)[0] + ", …"
        lines.append(f"- {sym.signature}: {members}" if members else f"- {sym.signature}")
    return fit_text(lines, SUMMARY_TOKENS * _CHARS)


def enrich_code(path: str, text: str, grammar: str | None = None) -> list[Draft]:
    """SYMBOL and FILE_SUMMARY drafts for one source file (``path`` cited as given; ``grammar`` overrides
    :func:`language_for`). Empty text gives ``[]``; unparseable text gives CHUNKs; never raises."""
    if not text.strip():
        return []
    grammar, lines = grammar or language_for(path, text) or "", text.splitlines()
    language = _language(grammar) if grammar in DEFS else None
    too_large = len(lines) > MAX_LINES or len(text) > MAX_AVG_LINE * len(lines)
    src = text.encode("utf-8", "surrogatepass")
    root = Parser(language).parse(src).root_node if language is not None and not too_large else None
    fallback = "unsupported" if language is None else "too_large" if root is None else ""
    if root is None or error_bytes(root) > MAX_ERROR_RATIO * len(src):
        return chunk_lines(path, text, meta={"fallback": fallback or "syntax_error"})
    sizes = (len(line.encode("utf-8", "surrogatepass")) for line in text.splitlines(keepends=True))
    starts = [0, *accumulate(sizes)][: len(lines)]
    ctx = Ctx(path, grammar, src, lines, starts)
    symbols, module = collect_symbols(root, ctx), module_name(path)
    summary = _summary_text(ctx, root, symbols)
    drafts = [Draft(RecordKind.FILE_SUMMARY, summary, (Evidence(path, 1, len(lines)),), title=module or path,
                    meta={"language": grammar, "module": module})]
    for sym in symbols:
        meta = {"language": grammar, "symbol_kind": sym.kind, "def_line": str(sym.def_line)}
        drafts.append(Draft(RecordKind.SYMBOL, _symbol_text(ctx, sym), (Evidence(path, sym.start, sym.end),),
                            title=f"{module}.{sym.name}" if module else sym.name, meta=meta))
    if not symbols:  # a script or a config module: its statements are the content, keep them findable
        drafts.extend(chunk_lines(path, text))
    qa = qa_draft(module or path, _likely_questions(ctx, root, symbols), {"language": grammar, "module": module})
    return drafts + ([qa] if qa else [])


def _first_sentence(doc: str) -> str:
    found = split_sentences(doc.splitlines())
    return found[0].text if found else ""


def _likely_questions(ctx: Ctx, root: Node, symbols: list[Symbol]) -> list[QA]:
    """What a reader asks of a module: what it is for, and per main public symbol what it does."""
    pairs = []
    name = module_name(ctx.path) or ctx.path
    if purpose := _first_sentence(_header_doc(root, ctx)):
        pairs.append(QA(f"What is {name} for?", purpose, Evidence(ctx.path, 1, len(ctx.lines))))
    public = [s for s in symbols if not any(p.startswith("_") for p in s.name.split("."))
              and (s.top or s.doc) and s.kind != "scope"]
    public.sort(key=lambda s: (not s.doc, s.kind != "class", -(s.end - s.start)))
    for sym in sorted(public[:_QA_SYMBOLS], key=lambda s: s.start):
        what = _first_sentence(sym.doc)
        if sym.kind == "class":
            members = ", ".join(m for m in sym.members if not m.startswith("_"))[:200]
            answer = " ".join(p for p in (what, f"Members: {members}." if members else "") if p)
            question = f"What is {sym.name} in {name} for?"
        else:
            answer = f"{sym.signature.strip()}" + (f" — {what}" if what else "")
            question = f"What does {sym.name} in {name} do and how is it called?"
        if answer:
            pairs.append(QA(question, fit_text([answer], 300).replace("\n", " "),
                            Evidence(ctx.path, sym.start, sym.end)))
    return pairs

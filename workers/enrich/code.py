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
import textwrap
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from typing import cast

import tree_sitter_language_pack as tslp
from tree_sitter import Language, Node, Parser

from sleepd.languages import EXTENSIONS, language_for
from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.digest import QA, qa_draft, split_sentences
from workers.enrich.docs import chunk_lines, fit_text, trim_lines

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
_SHORT_BODY = 15  # a body this many lines or fewer is worth quoting whole

# Per grammar, "role: node types; ...". A "class" is recorded and entered (members get qualified names);
# a "type" (struct, alias) and a "function" are recorded, not entered (nested helpers belong to their
# parent's body); a "scope" (Rust impl) only qualifies what is inside. Other nodes are walked through.
_JS = ("function: function_declaration generator_function_declaration method_definition variable_declarator;"
       "class: class_declaration")
_TS = (f"{_JS}; class: abstract_class_declaration interface_declaration internal_module;"
       "type: enum_declaration type_alias_declaration")
_C = "function: function_definition; type: struct_specifier union_specifier enum_specifier"
_SPECS = {
    "python": "function: function_definition; class: class_definition",
    "javascript": _JS, "typescript": _TS, "tsx": _TS,
    "c": _C, "cpp": f"{_C}; class: class_specifier struct_specifier",
    "go": "function: function_declaration method_declaration; type: type_spec",
    "java": "class: class_declaration interface_declaration enum_declaration record_declaration "
            "annotation_type_declaration; function: method_declaration constructor_declaration",
    "rust": "function: function_item function_signature_item; class: trait_item mod_item; scope: impl_item;"
            "type: struct_item enum_item union_item type_item",
    "ruby": "class: class module; function: method singleton_method",
    "csharp": "class: class_declaration interface_declaration struct_declaration record_declaration;"
              "type: enum_declaration; function: method_declaration constructor_declaration",
    "php": "class: class_declaration interface_declaration trait_declaration enum_declaration;"
           "function: function_definition method_declaration",
    "kotlin": "class: class_declaration object_declaration; function: function_declaration",
    "swift": "class: class_declaration protocol_declaration; function: function_declaration "
             "protocol_function_declaration",
    "scala": "class: class_definition object_definition trait_definition; function: function_definition "
             "function_declaration",
    "bash": "function: function_definition", "lua": "function: function_declaration",
}
_DEFS = {g: {t: role.strip() for part in spec.split(";") for role, _, types in [part.partition(":")]
             for t in types.split()} for g, spec in _SPECS.items()}
_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement", "import_spec",
                      "import_declaration", "use_declaration", "preproc_include", "using_directive",
                      "namespace_use_declaration", "import_header"})
# where the imported name sits; elsewhere it is the statement's text less its keyword
_IMPORT_FIELD = {"import_statement": "source", "preproc_include": "path", "use_declaration": "argument",
                 "import_spec": "path", "import_from_statement": "module_name"}
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "lexical_declaration", "type_declaration",
                       "variable_declaration", "template_declaration", "ambient_declaration"})
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_BODY_TYPES = frozenset({"class_body", "function_body", "block", "declaration_list", "template_body"})
_NAME_TYPES = frozenset({"identifier", "type_identifier", "simple_identifier", "constant", "name", "word"})
_MARKS = re.compile(r"^(?:/\*+|\*/|\*|///?!?|#!?|--)|</?(?:summary|remarks|returns|para)>")  # + C# XML doc
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


@dataclass
class _Ctx:
    path: str
    grammar: str
    src: bytes
    lines: list[str]
    starts: list[int]  # byte offset of each ``splitlines`` line, so evidence matches splitlines exactly

    def line(self, byte: int) -> int:  # 1-based
        return bisect_right(self.starts, byte)

    def text(self, node: Node | None, end: int | None = None) -> str:
        raw = self.src[node.start_byte : end or node.end_byte] if node is not None else b""
        return raw.decode(errors="replace")


@dataclass
class _Symbol:
    name: str  # qualified within the module: "Command.invoke"
    kind: str  # class | type | function | method
    signature: str
    doc: str
    start: int
    end: int
    def_line: int
    body: str
    top: bool
    members: list[str] = field(default_factory=list)


def _error_bytes(root: Node) -> int:
    """How much of the source sits in ERROR nodes (a MISSING token counts 1)."""
    total, stack = 0, [root] if root.has_error else []
    while stack:
        node = stack.pop()
        # MISSING tokens a grammar inserts silently (Kotlin's "_automatic_semicolon") are not errors
        if node.is_error or (node.is_missing and not node.type.startswith("_")):
            total += max(node.end_byte - node.start_byte, 1)
        else:
            stack.extend(c for c in node.children if c.has_error)
    return total


def _role(node: Node, grammar: str) -> str | None:
    role = _DEFS[grammar].get(node.type)
    if role and node.type == "variable_declarator":  # only `const f = () => ...` counts as a function
        value = node.child_by_field_name("value")
        role = role if value is not None and value.type in _FUNCTION_VALUES else None
    no_body = node.type.endswith("_specifier") and not node.child_by_field_name("body")  # `struct a;`: a use
    return None if no_body else role


def _body(node: Node) -> Node | None:
    if node.type == "variable_declarator":
        node = node.child_by_field_name("value") or node
    body = node.child_by_field_name("body")
    return body or next((c for c in node.named_children if c.type in _BODY_TYPES), None)


def _clean_name(raw: str) -> str:
    for _ in range(3):  # generics may nest: Foo<Bar<T>>
        raw = re.sub(r"<[^<>]*>|\[[^\[\]]*\]", "", raw)
    raw = raw.split("(", 1)[0]  # C++ `& get() const override`: the name is what precedes the parameters
    return re.sub(r"\s+", "", re.sub(r"::|->|:|\\", ".", raw)).strip("*&.<>")[:120]


def _name(node: Node, ctx: _Ctx) -> str:
    # a Rust impl is named by its type; C/C++ names hide in nested declarators
    target = node.child_by_field_name("type" if node.type == "impl_item" else "name")
    target = target or node.child_by_field_name("declarator")
    while target is not None and target.child_by_field_name("declarator") is not None:
        target = target.child_by_field_name("declarator")
    target = target or next((c for c in node.named_children if c.type in _NAME_TYPES), None)
    name = _clean_name(ctx.text(target))
    receiver = node.child_by_field_name("receiver") if ctx.grammar == "go" else None
    if receiver is not None and receiver.named_children and name:  # Go: func (s *Server) Start
        owner = _clean_name(ctx.text(receiver.named_children[0].child_by_field_name("type")))
        return f"{owner}.{name}" if owner else name
    return name


def _anchor(node: Node) -> Node:
    """The node whose span the symbol owns: climb decorators, ``export``, ``const x =`` wrappers."""
    while (parent := node.parent) is not None and parent.type in _WRAPPERS:
        if sum(c.type == node.type for c in parent.named_children) != 1:
            break  # `type ( A int; B int )`: the wrapper is shared, it belongs to no one symbol
        node = parent
    return node


def _strip_comment(lines: list[str]) -> str:
    out = [_MARKS.sub("", x.strip()) for x in lines]
    return "\n".join(s.removesuffix("*/").rstrip().removeprefix(" ") for s in out).strip("\n")


def _comment_above(ctx: _Ctx, first: int) -> tuple[int, str]:
    """``(first line, cleaned text)`` of the comment block right above 1-based line ``first``."""
    # block comments count when each line is marked (`/**`, ` * `, ` */`), as doc comments are
    hashes = ctx.grammar in ("python", "ruby", "bash")
    markers = ("#",) if hashes else ("--",) if ctx.grammar == "lua" else ("/", "*")
    i, start, doc = first - 2, first, list[str]()
    while i >= 0:
        s = ctx.lines[i].strip()
        if s.startswith("#[") and ctx.grammar == "rust":
            start, i = i + 1, i - 1  # an attribute: part of the item, not its doc
        elif s.startswith(markers) and not (i == 0 and s.startswith("#!")):  # a shebang documents nothing
            doc, start, i = [ctx.lines[i], *doc], i + 1, i - 1
        else:
            break
    return start, _strip_comment(doc)


def _docstring(container: Node | None, ctx: _Ctx) -> tuple[str, Node | None]:
    """A Python docstring: the first statement of ``container`` if it is a plain string literal."""
    first = next((c for c in container.named_children if c.type != "comment"), None) if container else None
    if ctx.grammar != "python" or first is None or first.type != "string" or first.child_count < 2:
        return "", None
    if re.search(r"[bBfF]", ctx.text(first.children[0])):
        return "", None  # bytes or an f-string is not a docstring
    raw = ctx.src[first.children[0].end_byte : first.children[-1].start_byte].decode("utf-8", "replace")
    head, _, rest = raw.partition("\n")  # as inspect.cleandoc: first line flush, the rest dedented
    return "\n".join(x for x in (head.strip(), textwrap.dedent(rest).strip()) if x), first


def _signature(ctx: _Ctx, node: Node, anchor: Node, body: Node | None) -> str:
    if body is not None and body.start_byte > anchor.start_byte:
        end = body.start_byte
    else:  # no body (a Go type, an abstract method): its first line says enough
        newline = ctx.src.find(b"\n", node.start_byte)
        end = node.end_byte if newline < 0 else min(newline, node.end_byte)
    # a comment between the name and the body (Ruby puts them there) is not part of the signature
    comments = [c.start_byte for c in node.children if "comment" in c.type and c.start_byte > node.start_byte]
    sig = " ".join(ctx.text(anchor, min([end, *comments])).split())
    if node.type == "type_spec" and anchor is node:
        sig = f"type {sig}"  # a spec inside a `type ( ... )` group
    sig = re.sub(r"\(\s+", "(", re.sub(r",?\s+\)", ")", sig))
    return sig.rstrip("{:=; ").removesuffix("=>").rstrip()[:300]


def _body_text(ctx: _Ctx, node: Node, body: Node | None, doc_node: Node | None) -> str:
    """The body's source lines (after any docstring), dedented, if there are few; else ``""``."""
    last = ctx.line(node.end_byte - 1)
    from_byte = doc_node.end_byte if doc_node is not None else (body or node).start_byte
    first = ctx.line(from_byte)
    if doc_node is not None or ctx.src[ctx.starts[first - 1] : from_byte].strip():
        first += 1  # the docstring, or a signature ending in `{`, owns that line: the body is below
    if first > last:  # a one-liner: whatever follows the signature is the body
        return ctx.text(body).strip() if body is not None and doc_node is None else ""
    short = last - first < _SHORT_BODY
    return textwrap.dedent("\n".join(ctx.lines[first - 1 : last])).strip("\n") if short else ""


def _symbol(node: Node, role: str, name: str, in_type: bool, ctx: _Ctx) -> _Symbol:
    anchor, body = _anchor(node), _body(node)
    start, comment = ctx.line(anchor.start_byte), ""
    if not ctx.src[ctx.starts[start - 1] : anchor.start_byte].strip():  # first on its line: may own a comment
        start, comment = _comment_above(ctx, start)
    doc, doc_node = _docstring(body, ctx)
    kind = "method" if role == "function" and (in_type or "." in name) else role
    return _Symbol(name, kind, _signature(ctx, node, anchor, body), doc or comment, start,
                   ctx.line(anchor.end_byte - 1), ctx.line(node.start_byte),
                   _body_text(ctx, node, body, doc_node), not in_type)


def _collect(root: Node, ctx: _Ctx) -> list[_Symbol]:
    """Symbols in document order. An explicit stack: deep expression nesting cannot overflow."""
    symbols: list[_Symbol] = []
    stack: list[tuple[Node, tuple[str, ...], _Symbol | None]] = [(root, (), None)]
    while stack:
        node, scope, owner = stack.pop()
        role = _role(node, ctx.grammar) if node is not root else None
        name = _name(node, ctx) if role else ""
        if role is None:
            stack.extend((c, scope, owner) for c in reversed(node.named_children))
            continue
        inner, body = ((*scope, name) if name else scope), _body(node)
        if node.has_error and role != "class":
            continue  # a broken function or type: its signature and span cannot be trusted
        if role != "scope" and name:
            sym = _symbol(node, role, ".".join(inner), bool(scope), ctx)
            symbols.append(sym)
            if owner is not None:
                owner.members.append(name)
            owner = sym
        if role in ("scope", "class") and (role == "scope" or name) and body is not None:
            stack.extend((c, inner, owner) for c in reversed(body.named_children))
    return symbols


def _symbol_text(ctx: _Ctx, sym: _Symbol) -> str:
    label = f"{sym.name}: " if "." in sym.name else ""  # a method says whose it is
    head = f"{label}{sym.signature}  [{ctx.path}:{sym.start}-{sym.end}]"
    doc = trim_lines(sym.doc, _DOC_LINES)
    fits = 0 < len(sym.body) <= SYMBOL_TOKENS * _CHARS - len(head) - len(doc) - 2
    tail = sym.body if fits else f"Members: {', '.join(sym.members)}" if sym.members else ""
    return fit_text([head, doc, tail], SYMBOL_TOKENS * _CHARS)


def _import_names(node: Node, ctx: _Ctx) -> list[str]:
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


def _imports(root: Node, ctx: _Ctx) -> list[str]:
    """Modules imported at (or near) the top level: ``if``/``try``/namespace blocks are looked into."""
    found: list[str] = []
    stack = [(c, 0) for c in reversed(root.named_children)]
    while stack:
        node, depth = stack.pop()
        # Go's import_declaration only groups import_specs: walk into it
        wrapper = ctx.grammar == "go" and node.type == "import_declaration"
        if (node.type in _IMPORTS and not wrapper) or (ctx.grammar == "ruby" and node.type == "call"):
            found.extend(_import_names(node, ctx))
        elif depth < 3 and node.type not in _DEFS[ctx.grammar]:
            stack.extend((c, depth + 1) for c in reversed(node.named_children))
    return list(dict.fromkeys(n for n in found if n))


def _header_doc(root: Node, ctx: _Ctx) -> str:
    """Module docstring, else the first comment block at the top that is not a license or pragma."""
    doc, _ = _docstring(root, ctx)
    first = next((c for c in root.named_children if "comment" not in c.type), None)
    top = [x for x in ctx.lines[: ctx.line(first.start_byte) - 1 if first else None] if x[:2] != "#!"]
    blocks = [doc, *(_strip_comment(b.splitlines()) for b in re.split(r"\n\s*\n", "\n".join(top)))]
    return next((b for b in blocks if b and not _BORING.search(b)), "")


def _summary_text(ctx: _Ctx, root: Node, symbols: list[_Symbol]) -> str:
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
    language = _language(grammar) if grammar in _DEFS else None
    too_large = len(lines) > MAX_LINES or len(text) > MAX_AVG_LINE * len(lines)
    src = text.encode("utf-8", "surrogatepass")
    root = Parser(language).parse(src).root_node if language is not None and not too_large else None
    fallback = "unsupported" if language is None else "too_large" if root is None else ""
    if root is None or _error_bytes(root) > MAX_ERROR_RATIO * len(src):
        return chunk_lines(path, text, meta={"fallback": fallback or "syntax_error"})
    sizes = (len(line.encode("utf-8", "surrogatepass")) for line in text.splitlines(keepends=True))
    starts = [0, *accumulate(sizes)][: len(lines)]
    ctx = _Ctx(path, grammar, src, lines, starts)
    symbols, module = _collect(root, ctx), module_name(path)
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


def _likely_questions(ctx: _Ctx, root: Node, symbols: list[_Symbol]) -> list[QA]:
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

"""Symbols in a tree-sitter syntax tree: which nodes are classes, functions and types, per grammar.

:func:`collect_symbols` walks a parsed file (:class:`Ctx`) and returns its :class:`Symbol` s in
document order, each with its qualified name, signature, doc comment or docstring, exact line span
and (when short) body. :mod:`workers.enrich.code` turns them into records. Pure: no I/O.
"""

from __future__ import annotations

import re
import textwrap
from bisect import bisect_right
from dataclasses import dataclass, field

from tree_sitter import Node

__all__ = ["DEFS", "Ctx", "Symbol", "collect_symbols", "docstring", "error_bytes", "strip_comment"]

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
DEFS = {g: {t: role.strip() for part in spec.split(";") for role, _, types in [part.partition(":")]
             for t in types.split()} for g, spec in _SPECS.items()}
_WRAPPERS = frozenset({"decorated_definition", "export_statement", "lexical_declaration", "type_declaration",
                       "variable_declaration", "template_declaration", "ambient_declaration"})
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_BODY_TYPES = frozenset({"class_body", "function_body", "block", "declaration_list", "template_body"})
_NAME_TYPES = frozenset({"identifier", "type_identifier", "simple_identifier", "constant", "name", "word"})
_MARKS = re.compile(r"^(?:/\*+|\*/|\*|///?!?|#!?|--)|</?(?:summary|remarks|returns|para)>")  # + C# XML doc


@dataclass
class Ctx:
    """One source file being parsed: its text as bytes and lines, and its grammar."""

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
class Symbol:
    """A class, type, function or method found in the tree, with its exact 1-based line span."""

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


def error_bytes(root: Node) -> int:
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
    role = DEFS[grammar].get(node.type)
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


def _name(node: Node, ctx: Ctx) -> str:
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


def strip_comment(lines: list[str]) -> str:
    out = [_MARKS.sub("", x.strip()) for x in lines]
    return "\n".join(s.removesuffix("*/").rstrip().removeprefix(" ") for s in out).strip("\n")


def _comment_above(ctx: Ctx, first: int) -> tuple[int, str]:
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
    return start, strip_comment(doc)


def docstring(container: Node | None, ctx: Ctx) -> tuple[str, Node | None]:
    """A Python docstring: the first statement of ``container`` if it is a plain string literal."""
    first = next((c for c in container.named_children if c.type != "comment"), None) if container else None
    if ctx.grammar != "python" or first is None or first.type != "string" or first.child_count < 2:
        return "", None
    if re.search(r"[bBfF]", ctx.text(first.children[0])):
        return "", None  # bytes or an f-string is not a docstring
    raw = ctx.src[first.children[0].end_byte : first.children[-1].start_byte].decode("utf-8", "replace")
    head, _, rest = raw.partition("\n")  # as inspect.cleandoc: first line flush, the rest dedented
    return "\n".join(x for x in (head.strip(), textwrap.dedent(rest).strip()) if x), first


def _signature(ctx: Ctx, node: Node, anchor: Node, body: Node | None) -> str:
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


def _body_text(ctx: Ctx, node: Node, body: Node | None, doc_node: Node | None) -> str:
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


def _symbol(node: Node, role: str, name: str, in_type: bool, ctx: Ctx) -> Symbol:
    anchor, body = _anchor(node), _body(node)
    start, comment = ctx.line(anchor.start_byte), ""
    if not ctx.src[ctx.starts[start - 1] : anchor.start_byte].strip():  # first on its line: may own a comment
        start, comment = _comment_above(ctx, start)
    doc, doc_node = docstring(body, ctx)
    kind = "method" if role == "function" and (in_type or "." in name) else role
    return Symbol(name, kind, _signature(ctx, node, anchor, body), doc or comment, start,
                   ctx.line(anchor.end_byte - 1), ctx.line(node.start_byte),
                   _body_text(ctx, node, body, doc_node), not in_type)


def collect_symbols(root: Node, ctx: Ctx) -> list[Symbol]:
    """Symbols in document order. An explicit stack: deep expression nesting cannot overflow."""
    symbols: list[Symbol] = []
    stack: list[tuple[Node, tuple[str, ...], Symbol | None]] = [(root, (), None)]
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

"""The deterministic enrichers on real inputs: installed packages' sources and small inline samples."""

from __future__ import annotations

import inspect
import re
import textwrap
from itertools import pairwise
from pathlib import Path

import click
import click.core
import httpx
import pytest

from sleepd.records import Draft, RecordKind
from workers.enrich import PROFILES, enrich_text
from workers.enrich.code import MAX_LINES, SUMMARY_TOKENS, SYMBOL_TOKENS, language_for, module_name
from workers.enrich.docs import SECTION_TOKENS, enrich_docs

SITE = Path(click.__file__).parent.parent
CHARS_PER_TOKEN = 4


def read(rel: str) -> str:
    return (SITE / rel).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def click_core() -> tuple[str, list[Draft]]:
    text = read("click/core.py")
    return text, enrich_text("click/core.py", text)


@pytest.fixture(scope="module")
def httpx_client() -> tuple[str, list[Draft]]:
    text = read("httpx/_client.py")
    return text, enrich_text("httpx/_client.py", text)


def by_title(drafts: list[Draft], title: str) -> list[Draft]:
    return [d for d in drafts if d.title == title]


def span(text: str, draft: Draft) -> list[str]:
    ev = draft.evidence[0]
    return text.splitlines()[ev.start_line - 1 : ev.end_line]


def assert_evidence_exact(text: str, drafts: list[Draft]) -> None:
    """Every span is in range and is what the record was made from."""
    lines = text.splitlines()
    assert drafts
    for draft in drafts:
        for ev in draft.evidence:
            assert 1 <= ev.start_line <= ev.end_line <= len(lines), (draft.title, ev)
        if draft.kind is RecordKind.QUESTIONS:  # likely questions: every answer names the span it cites
            cited = {m for m in re.findall(r"\((\S+), lines? (\d+)(?:-(\d+))?\)", draft.text)}
            assert {(e.path, str(e.start_line), "" if e.end_line == e.start_line else str(e.end_line))
                    for e in draft.evidence} == cited, draft.title
            continue
        # a summary cites the whole file first, and then (prose) the lines of its sentences
        assert len(draft.evidence) == 1 or draft.kind is RecordKind.FILE_SUMMARY
        ev = draft.evidence[0]
        lines_in_span = span(text, draft)
        if draft.kind is RecordKind.SYMBOL:
            def_line = int(draft.meta["def_line"])
            assert ev.start_line <= def_line <= ev.end_line
            # the definition starts there (annotations inside it may come before the name)
            short_name = draft.title.rsplit(".", 1)[-1]
            assert short_name in "".join(lines[def_line - 1 : def_line + 2]), (draft.title, def_line)
        elif draft.kind is RecordKind.FILE_SUMMARY:
            assert (ev.start_line, ev.end_line) == (1, len(lines))
        else:
            # prose/chunk text (after the heading-path prefix) comes line by line from the span (an
            # over-long line may come in pieces), and the span is tight: its first and last lines
            # hold the text's first and last lines
            body = draft.text.split("\n\n", 1)[1] if draft.kind is RecordKind.SECTION else draft.text
            body_lines = [line.strip() for line in body.splitlines() if line.strip()]
            for line in body_lines:
                assert any(line in s for s in lines_in_span), (draft.title, line)
            assert body_lines[0] in lines_in_span[0] and body_lines[-1] in lines_in_span[-1], draft.title


# --- code: Python, from real installed packages -------------------------------------------------


def test_click_command_invoke_symbol_has_span_and_docstring(click_core: tuple[str, list[Draft]]) -> None:
    text, drafts = click_core
    (invoke,) = by_title(drafts, "click.core.Command.invoke")
    assert invoke.kind is RecordKind.SYMBOL
    assert invoke.meta["symbol_kind"] == "method"
    assert "def invoke" in span(text, invoke)[0]
    ev = invoke.evidence[0]
    header = invoke.text.splitlines()[0]
    assert header.startswith("Command.invoke: def invoke(self, ctx") and header.endswith(
        f"  [click/core.py:{ev.start_line}-{ev.end_line}]")
    doc = inspect.getdoc(click.core.Command.invoke)
    assert doc and doc.splitlines()[0] in invoke.text
    # the span ends with the method's last line, not at the next definition
    assert span(text, invoke)[-1].strip() == "return ctx.invoke(self.callback, **ctx.params)"


def test_python_file_summary_lists_imports_and_definitions(click_core: tuple[str, list[Draft]]) -> None:
    text, drafts = click_core
    summaries = [d for d in drafts if d.kind is RecordKind.FILE_SUMMARY]
    assert len(summaries) == 1 and summaries[0] is drafts[0]
    summary = summaries[0]
    assert summary.title == "click.core"
    imports = next(line for line in summary.text.splitlines() if line.startswith("Imports: "))
    for module in ("collections.abc", "enum", ".exceptions", ".utils"):
        assert module in imports.split(": ", 1)[1].split(", ")
    for definition in ("- class Context", "- class Command", "- class Group(Command)"):
        assert definition in summary.text
    assert summary.evidence[0].start_line == 1 and summary.evidence[0].end_line == len(text.splitlines())
    assert len(summary.text) <= SUMMARY_TOKENS * CHARS_PER_TOKEN


def test_methods_get_qualified_names_and_multiline_signatures_collapse(
    httpx_client: tuple[str, list[Draft]],
) -> None:
    text, drafts = httpx_client
    (send,) = by_title(drafts, "httpx._client.Client.send")
    (async_send,) = by_title(drafts, "httpx._client.AsyncClient.send")
    assert "def send(" in span(text, send)[0] and "async def send(" in span(text, async_send)[0]
    header = send.text.splitlines()[0]  # a signature over several lines reads as one
    assert header.startswith("Client.send: def send(self, request: Request, *, stream: bool")
    ev = send.evidence[0]
    assert header.endswith(f"  [httpx/_client.py:{ev.start_line}-{ev.end_line}]")
    doc = inspect.getdoc(httpx.Client.send)
    assert doc and doc.splitlines()[0] in send.text
    client = by_title(drafts, "httpx._client.Client")[0]
    assert client.meta["symbol_kind"] == "class" and "send" in client.text  # members listed


def test_every_record_has_exact_evidence_on_real_files(
    click_core: tuple[str, list[Draft]], httpx_client: tuple[str, list[Draft]]
) -> None:
    for text, drafts in (click_core, httpx_client):
        assert_evidence_exact(text, drafts)
        for draft in drafts:
            if draft.kind is RecordKind.SYMBOL:
                assert len(draft.text) <= SYMBOL_TOKENS * CHARS_PER_TOKEN
    decorators = read("click/decorators.py")
    assert_evidence_exact(decorators, enrich_text("click/decorators.py", decorators))


def test_decorators_and_short_bodies_belong_to_the_symbol() -> None:
    text = textwrap.dedent('''\
        """Shapes."""
        import math


        class Circle:
            # not the docstring: the class has one
            """A circle."""

            @property
            def area(self) -> float:
                """Area of the circle."""
                return math.pi * self.r**2
        ''')
    drafts = enrich_text("geo/shapes.py", text)
    (area,) = by_title(drafts, "geo.shapes.Circle.area")
    assert span(text, area)[0].strip() == "@property" and int(area.meta["def_line"]) == 10
    assert area.text.splitlines()[1:] == ["Area of the circle.", "return math.pi * self.r**2"]
    (summary,) = [d for d in drafts if d.kind is RecordKind.FILE_SUMMARY]
    assert summary.text.splitlines()[1:3] == ["Shapes.", "Imports: math"]
    assert_evidence_exact(text, drafts)


def test_evidence_follows_splitlines_even_with_form_feeds_and_crlf() -> None:
    # splitlines() breaks at \x0c and \r\n; tree-sitter rows count only \n: spans must follow splitlines
    text = "import os\r\n\x0c\r\ndef first():\r\n    return 1\r\n\x0c\ndef second():\r\n    return 2\r\n"
    drafts = enrich_text("m.py", text)
    (second,) = by_title(drafts, "m.second")
    assert span(text, second) == ["def second():", "    return 2"]
    assert_evidence_exact(text, drafts)


def test_syntax_broken_python_degrades_to_chunks() -> None:
    text = "def broken(:\n    return (\n" + "x = [1, 2\n" * 40 + "class Fine:\n    pass\n"
    drafts = enrich_text("broken.py", text)
    assert drafts and all(d.kind is RecordKind.CHUNK for d in drafts)
    assert {d.meta["fallback"] for d in drafts} == {"syntax_error"}
    assert_evidence_exact(text, drafts)


def test_one_broken_function_in_a_big_file_keeps_the_other_symbols() -> None:
    good = "".join(f"def f{i}(a, b):\n    '''Doc {i}.'''\n    return a + b\n\n\n" for i in range(60))
    text = good + "def broken(a:\n    return a\n"
    titles = {d.title for d in enrich_text("big.py", text)}
    assert {"big.f0", "big.f59"} <= titles and "big.broken" not in titles


# --- code: other languages, through tree-sitter ------------------------------------------------

GO = """\
// Package server serves things.
package server

import (
\t"fmt"
\t"net/http"
)

// Server holds the listener.
type Server struct {
\tAddr string
}

// Start starts the server on port.
func (s *Server) Start(port int) error {
\tfmt.Println(port)
\treturn http.ListenAndServe(s.Addr, nil)
}
"""

JAVA = """\
package com.example;

import java.util.List;

/** Greets people. */
public class Greeter {
    /**
     * Greet someone.
     * @param who the target
     */
    @Override
    public String greet(String who) {
        return "hi " + who;
    }
}
"""

RUST = """\
use std::fmt;

/// A point in the plane.
#[derive(Debug)]
pub struct Point { x: f64, y: f64 }

impl fmt::Display for Point {
    /// Formats as (x, y).
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}
"""

TYPESCRIPT = """\
import { readFile } from "fs";

/** Shapes with an area. */
export interface Shape { area(): number; }

export class Circle implements Shape {
  constructor(private r: number) {}
  /** The area. */
  area(): number { return Math.PI * this.r ** 2; }
}

// Adds two numbers.
export const add = (a: number, b: number): number => a + b;
"""


def test_go_methods_are_qualified_by_receiver_and_keep_doc_comments() -> None:
    drafts = enrich_text("pkg/server/server.go", GO)
    (start,) = by_title(drafts, "pkg.server.server.Server.Start")
    assert span(GO, start)[0] == "// Start starts the server on port."
    assert "func (s *Server) Start" in span(GO, start)[1]
    assert "Start starts the server on port." in start.text and start.meta["symbol_kind"] == "method"
    (server,) = by_title(drafts, "pkg.server.server.Server")
    assert server.text.startswith("type Server struct") and "Addr string" in server.text
    summary = drafts[0].text
    assert "Package server serves things." in summary and "Imports: fmt, net/http" in summary
    assert_evidence_exact(GO, drafts)


def test_java_rust_typescript_symbols() -> None:
    java = enrich_text("com/example/Greeter.java", JAVA)
    (greet,) = by_title(java, "com.example.Greeter.Greeter.greet")
    assert "Greet someone." in greet.text and "@Override public String greet(String who)" in greet.text
    assert span(JAVA, greet)[0].strip() == "/**"
    rust = enrich_text("src/geo.rs", RUST)
    (fmt,) = by_title(rust, "geo.Point.fmt")  # impl blocks qualify by their type; src/ is not in the name
    assert "Formats as (x, y)." in fmt.text and fmt.meta["symbol_kind"] == "method"
    (point,) = by_title(rust, "geo.Point")
    assert span(RUST, point)[0] == "/// A point in the plane." and "#[derive(Debug)]" in span(RUST, point)
    ts = enrich_text("src/shapes.ts", TYPESCRIPT)
    titles = {d.title for d in ts}
    assert {"shapes.Shape", "shapes.Circle", "shapes.Circle.area", "shapes.add"} <= titles
    (add,) = by_title(ts, "shapes.add")
    assert add.text.startswith("export const add = (a: number, b: number): number") and "Adds two" in add.text
    assert "Imports: fs" in ts[0].text
    for text, drafts in ((JAVA, java), (RUST, rust), (TYPESCRIPT, ts)):
        assert_evidence_exact(text, drafts)


SAMPLES = {
    "a.py": ("def hello(name):\n    return name\n", "a.hello"),
    "a.js": ("function hello(name) {\n  return name;\n}\n", "a.hello"),
    "a.jsx": ("const Hello = ({ name }) => <b>{name}</b>;\n", "a.Hello"),
    "a.ts": ("function hello(name: string): string {\n  return name;\n}\n", "a.hello"),
    "a.tsx": ("export function Hello(p: { n: string }) {\n  return <b>{p.n}</b>;\n}\n", "a.Hello"),
    "a.go": ("package a\n\nfunc Hello(name string) string {\n\treturn name\n}\n", "a.Hello"),
    "A.java": ("class A {\n  String hello(String n) { return n; }\n}\n", "A.A.hello"),
    "a.rs": ("fn hello(name: &str) -> &str {\n    name\n}\n", "a.hello"),
    "a.rb": ("class A\n  def hello(name)\n    name\n  end\nend\n", "a.A.hello"),
    "a.c": ("static int hello(int n) {\n    return n;\n}\n", "a.hello"),
    "a.h": ("namespace n {\nclass A {\n  int hello() { return 1; }\n};\n}\n", "a.A.hello"),
    "a.cpp": ("int A::hello(int n) {\n    return n;\n}\n", "a.A.hello"),
    "a.cs": ("class A {\n    public int Hello(int n) { return n; }\n}\n", "a.A.Hello"),
    "a.php": ("<?php\nfunction hello($n) {\n    return $n;\n}\n", "a.hello"),
    "a.kt": ("class A {\n    fun hello(n: Int): Int {\n        return n\n    }\n}\n", "a.A.hello"),
    "a.swift": ("func hello(n: Int) -> Int {\n    return n\n}\n", "a.hello"),
    "a.scala": ("object A {\n  def hello(n: Int): Int = n\n}\n", "a.A.hello"),
    "a.sh": ("#!/bin/sh\nhello() {\n  echo \"$1\"\n}\n", "a.hello"),
    "a.lua": ("local function hello(n)\n  return n\nend\n", "a.hello"),
}


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_each_supported_language_yields_its_symbol(path: str) -> None:
    text, title = SAMPLES[path]
    assert language_for(path) is not None
    drafts = enrich_text(path, text)
    assert [d.kind for d in drafts[:1]] == [RecordKind.FILE_SUMMARY]
    assert title in {d.title for d in drafts if d.kind is RecordKind.SYMBOL}, [d.title for d in drafts]
    assert_evidence_exact(text, drafts)


def test_minified_javascript_degrades_to_chunks() -> None:
    text = ";".join(f"function f{i}(a){{return a*{i}}}" for i in range(400)) + "\n"
    drafts = enrich_text("dist/app.min.js", text)
    assert len(drafts) > 1 and all(d.kind is RecordKind.CHUNK for d in drafts)
    assert {d.meta["fallback"] for d in drafts} == {"too_large"}
    assert all((d.evidence[0].start_line, d.evidence[0].end_line) == (1, 1) for d in drafts)
    assert "".join(d.text for d in drafts).replace(" ", "") == text.strip().replace(" ", "")


def test_huge_file_degrades_to_chunks() -> None:
    text = "x = 1\n" * (MAX_LINES + 1)
    drafts = enrich_text("gen.py", text)
    assert drafts and {d.meta.get("fallback") for d in drafts} == {"too_large"}
    assert_evidence_exact(text, drafts)


def test_code_without_symbols_keeps_its_statements() -> None:
    text = 'SETTINGS = {\n    "debug": True,\n}\n'
    drafts = enrich_text("conf/settings.py", text)
    assert [d.kind for d in drafts] == [RecordKind.FILE_SUMMARY, RecordKind.CHUNK]
    assert '"debug": True' in drafts[1].text


def test_unknown_extension_and_unsupported_code_still_give_drafts() -> None:
    assert module_name("pkg/__init__.py") == "pkg" and module_name("click/core.py") == "click.core"
    notes = enrich_text("notes.xyz", "first paragraph\nstill first\n\nsecond paragraph\n")
    assert notes and notes[0].kind is RecordKind.SECTION
    forced = enrich_text("README.md", "# Title\n\nText.\n", profile="code")
    assert forced and {d.meta.get("fallback") for d in forced} == {"unsupported"}
    assert language_for("tool", "#!/usr/bin/env python3\nprint(1)\n") == "python"


# --- docs ---------------------------------------------------------------------------------------

README = """\
# sleepd

A memory daemon.

## Install

### From source

Clone the repository:

```bash
# this is a shell comment, not a heading
git clone https://example.invalid/sleepd
```

### From PyPI

Run pip.

Usage
-----

Run `sleepd watch`.
"""


def test_markdown_headings_give_heading_path_titles_and_exact_spans() -> None:
    drafts = enrich_docs("README.md", README, budget=20)
    lines = README.splitlines()
    titles = [d.title for d in drafts]
    assert "sleepd > Install > From source" in titles and "sleepd > Install > From PyPI" in titles
    assert not any("shell comment" in t for t in titles)  # fenced code is not a heading
    (pypi,) = by_title(drafts, "sleepd > Install > From PyPI")
    ev = pypi.evidence[0]
    assert lines[ev.start_line - 1 : ev.end_line] == ["### From PyPI", "", "Run pip."]
    assert pypi.text == "sleepd > Install > From PyPI\n\n### From PyPI\n\nRun pip."
    usage = next(d for d in drafts if "Usage" in d.title)  # setext heading
    assert usage.title.startswith("sleepd > Usage") and "Run `sleepd watch`." in usage.text
    assert all(d.kind is RecordKind.SECTION for d in drafts)
    assert_evidence_exact(README, drafts)


def test_short_sections_merge_and_auto_profile_picks_docs() -> None:
    drafts = enrich_text("README.md", README)
    assert len(drafts) == 1  # the whole README fits one ~300-token record
    (merged,) = drafts
    assert merged.title.startswith("sleepd | Install | From source")
    assert (merged.evidence[0].start_line, merged.evidence[0].end_line) == (1, len(README.splitlines()))


def test_long_sections_split_at_paragraphs_with_the_heading_repeated() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 60 for i in range(12)]
    text = "# Guide\n\n## Deploy\n\n" + "\n\n".join(paragraphs) + "\n\n## Next\n\nShort.\n"
    drafts = enrich_docs("guide.md", text)
    deploy = by_title(drafts, "Guide > Deploy")
    assert len(deploy) >= 3
    for draft in deploy:
        assert draft.text.startswith("Guide > Deploy\n\n")
        assert len(draft.text) <= SECTION_TOKENS * CHARS_PER_TOKEN
        assert span(text, draft)[-1].startswith("Paragraph ")  # windows end on paragraph boundaries
    covered = [d.evidence[0] for d in deploy]
    assert all(a.end_line < b.start_line for a, b in pairwise(covered))
    assert "".join(d.text for d in deploy).count("Paragraph ") == 12
    assert_evidence_exact(text, drafts)


def test_rst_headings_and_plain_text_and_chunks() -> None:
    rst = "=====\nTitle\n=====\n\nIntro.\n\nPart A\n------\n\nText A.\n\nPart B\n------\n\nText B.\n"
    rst_drafts = enrich_docs("doc.rst", rst, budget=12)
    assert [(d.title, d.evidence[0].start_line, d.evidence[0].end_line) for d in rst_drafts] == [
        ("Title", 1, 5), ("Title > Part A", 7, 10), ("Title > Part B", 12, 15)]
    assert [d.title for d in enrich_docs("doc.rst", rst)] == ["Title | Part A | Part B"]  # merged
    plain = "\n\n".join(f"Paragraph {i}. " + "text " * 80 for i in range(6))
    sections = enrich_text("notes.txt", plain)
    assert [d.kind for d in sections[-2:]] == [RecordKind.FILE_SUMMARY, RecordKind.QUESTIONS]  # its digest
    assert len(sections) > 3
    assert all(d.kind is RecordKind.SECTION and d.title == "notes.txt" for d in sections[:-2])
    wall = "\n".join(f"log line {i} " + "x" * 40 for i in range(200))
    chunks = enrich_text("server.log", wall)
    assert len(chunks) > 1 and all(d.kind is RecordKind.CHUNK for d in chunks)
    for text, drafts in ((rst, rst_drafts), (plain, sections), (wall, chunks)):
        assert_evidence_exact(text, drafts)


@pytest.mark.parametrize("profile", PROFILES)
def test_empty_text_gives_nothing(profile: str) -> None:
    assert enrich_text("a.py", "", profile) == []
    assert enrich_text("README.md", " \n\t\n", profile) == []


def test_unknown_profile_raises() -> None:
    with pytest.raises(ValueError, match="profile"):
        enrich_text("a.py", "", profile="prose")

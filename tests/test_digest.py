"""Extractive digests: sentences with their lines, summaries, key facts and likely questions for
docs, code modules and accounts."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import click.core

from sleepd.glossary import expand
from sleepd.records import Draft, RecordKind
from tests.helpers import retail_account
from workers.enrich import enrich_text
from workers.enrich.digest import key_facts, question_for_heading, split_sentences, summarise

GUIDE = textwrap.dedent("""\
    # Ferry

    Ferry copies files between object stores and keeps a manifest of what it moved. It is built for
    nightly backups of build artefacts, where most files do not change between runs.

    ## Installing from source

    Ferry needs Python 3.11 or later. Clone the repository and run `pip install .` in it; the
    `ferry` command is then on your PATH.

    ```
    pip install .
    ferry --version
    ```

    ## Configuration

    Ferry reads `ferry.toml` from the working directory. The default concurrency is 8 transfers,
    and at most 64 are allowed. Credentials must never be written in the file: use the
    `FERRY_TOKEN` environment variable instead.

    ## How to resume an interrupted copy

    Run the same command again. Ferry compares the manifest with the destination and copies only
    the files that are missing or whose checksum differs, so a resumed copy moves no file twice.

    ## Why is my copy slow?

    Small files dominate the time: each one costs a round trip to the store. Pack them into an
    archive first, or raise the concurrency within its limit of 64.
    """)


def by_kind(drafts: list[Draft], kind: RecordKind) -> list[Draft]:
    return [d for d in drafts if d.kind == kind]


def test_sentences_keep_their_lines_and_skip_code_and_headings() -> None:
    lines = GUIDE.splitlines()
    sentences = split_sentences(lines)
    texts = [s.text for s in sentences]
    assert texts[0] == "Ferry copies files between object stores and keeps a manifest of what it moved."
    assert not any("ferry --version" in t or t.startswith("#") for t in texts)
    for s in sentences:  # every sentence's first and last words are on the lines it names
        span = " ".join(lines[s.start_line - 1:s.end_line])
        assert s.text.split()[0] in span and s.text.split()[-1].rstrip(".?") in span, s
    two_lines = next(s for s in sentences if s.text.startswith("Ferry needs Python"))
    assert (two_lines.start_line, two_lines.end_line) == (8, 8)
    clone = next(s for s in sentences if s.text.startswith("Clone the repository"))
    assert (clone.start_line, clone.end_line) == (8, 9) and not clone.lead and two_lines.lead


def test_summary_is_central_sentences_in_order_and_facts_are_checkable() -> None:
    sentences = split_sentences(GUIDE.splitlines())
    summary = summarise(sentences, 3)
    assert len(summary) == 3 and summary == sorted(summary, key=lambda s: s.start_line)
    assert summary[0].text.startswith("Ferry copies files")  # the document's first sentence leads
    facts = key_facts(sentences, 4, skip=summary)
    assert facts and not set(facts) & set(summary)
    assert any("at most 64" in f.text for f in facts)
    assert all(any(c.isdigit() for c in f.text) or "must" in f.text or "`" in f.text or " is " in f.text
               for f in facts)


def test_questions_from_headings() -> None:
    assert question_for_heading("Installing from source", "Ferry") == "How do I install from source?"
    assert question_for_heading("How to resume an interrupted copy", "Ferry") == "How do I resume an interrupted copy?"
    assert question_for_heading("Why is my copy slow?", "Ferry") == "Why is my copy slow?"
    assert question_for_heading("Configuration", "Ferry") == "What does Ferry say about configuration?"
    assert question_for_heading("`--dry-run` flag", "Ferry") == "What does Ferry say about --dry-run flag?"


def test_a_document_gets_a_summary_and_likely_questions_pointing_at_sections() -> None:
    drafts = enrich_text("docs/ferry.md", GUIDE)
    lines = GUIDE.splitlines()
    [summary] = by_kind(drafts, RecordKind.FILE_SUMMARY)
    assert summary.title == "Ferry: summary" and summary.evidence[0].start_line == 1
    assert "Outline: Ferry (Installing from source; Configuration;" in summary.text
    assert "Key facts:" in summary.text and "(line 18)" in summary.text
    [qa] = by_kind(drafts, RecordKind.QUESTIONS)
    assert qa.meta["generator"] == "deterministic"
    assert "Q: How do I install from source?\nA: Ferry needs Python 3.11 or later." in qa.text
    assert "Q: Why is my copy slow?\nA: Small files dominate the time" in qa.text
    install = next(e for e in qa.evidence if lines[e.start_line - 1] == "## Installing from source")
    assert "pip install ." in "\n".join(lines[install.start_line - 1:install.end_line])
    assert f"(docs/ferry.md, lines {install.start_line}-{install.end_line})" in qa.text
    assert by_kind(drafts, RecordKind.SECTION)  # the sections are still there


def test_short_notes_and_data_files_get_no_digest() -> None:
    note = "# Note\n\nCall Ana before the release. The build is green.\n"
    assert not by_kind(enrich_text("note.md", note), RecordKind.QUESTIONS)
    config = "\n".join(f"# option {i}\nkey_{i} = {i}  # the value of option {i} is a number\n" for i in range(60))
    assert not by_kind(enrich_text("big.toml", config), RecordKind.FILE_SUMMARY)


def test_a_code_module_gets_likely_questions_from_its_docstrings() -> None:
    source = inspect.getsource(click.core)
    drafts = enrich_text("click/core.py", source)
    [qa] = by_kind(drafts, RecordKind.QUESTIONS)
    assert qa.title == "click.core: likely questions"
    assert "Q: What is Command in click.core for?" in qa.text or "Q: What is Group in click.core for?" in qa.text
    lines = source.splitlines()
    for evidence in qa.evidence[1:] if qa.evidence[0].start_line == 1 else qa.evidence:
        first = "\n".join(lines[evidence.start_line - 1:evidence.start_line + 3])
        assert "class " in first or "def " in first or "@" in first, evidence
    assert qa.text.count("Q: ") <= 7


def test_an_account_gets_likely_questions_answered_from_its_rows(tmp_path: Path) -> None:
    document = retail_account(tmp_path, "yusuf_rossi_9620")
    drafts = enrich_text("yusuf_rossi_9620", document, profile="accounts")
    [qa] = by_kind(drafts, RecordKind.QUESTIONS)
    assert "Q: How do I reach Yusuf Rossi, and where do they live?" in qa.text and "19122" in qa.text
    assert "Q: Which payment methods does Yusuf Rossi have?" in qa.text
    orders = json.loads(document)["rows"]["orders"]
    assert f"Q: What orders does Yusuf Rossi have, and where does each stand?\nA: {len(orders)} orders:" in qa.text
    assert "#W2378156 " in qa.text
    assert qa.evidence[0].path == "users:yusuf_rossi_9620"
    assert "Q: What payment methods does Yusuf Rossi have?\nA: 1 payment methods: credit_card_9513926" in qa.text
    assert "Q: Has Yusuf Rossi been refunded?\nA: #W9711842 transaction_type refund, amount 281.48" in qa.text
    assert {e.path.split(":")[0] for e in qa.evidence} == {"users", "orders", "payment_methods"}


def test_terms_of_art_are_spelled_out_for_the_embedding() -> None:
    assert expand("What is the ROFR clause?") == (
        "What is the ROFR clause? (right of first refusal, right of first offer or right of first negotiation to "
        "buy, license or distribute)")
    both = expand("Is there a cap on liability or uncapped liability?")
    assert "limitation of liability" in both and "not limited" in both
    assert expand("how are redirects handled?") == "how are redirects handled?"
    assert expand("insurances of the reinsurance kind") == "insurances of the reinsurance kind"  # whole words only

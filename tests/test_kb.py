"""The knowledge-base bench corpus, read from the installed wheel's data files (no network)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from sleepd.bench.corpora import ArticleGold, Question, Snippet, recall
from sleepd.bench.kb import DIST, article_recall, half_of, kb_data, load_kb, to_markdown


def test_articles_and_questions_come_from_the_package_with_gold_that_exists() -> None:
    articles, questions = kb_data()
    ids = {a.id for a in articles}
    assert len(ids) == len(articles) >= 100
    assert len(questions) >= 1000
    assert all(q.gold and set(q.gold) <= ids for q in questions)
    assert len({q.id for q in questions}) == len(questions)
    # every article is asked about, and its gold article states the fact the question asks for
    assert {g for q in questions for g in q.gold} == ids
    shipped = json.loads(Path(str(metadata.distribution(DIST).locate_file(
        "browsergym/workarena/data_files/task_configs/knowledge_base_configs.json"))).read_text(encoding="utf-8"))
    by_id = {a.id: a for a in articles}
    for question, config in zip(questions, shipped, strict=True):
        assert question.text == config["question"]
        assert config["value"].lower() in by_id[question.gold[0]].text.lower()


def test_load_kb_writes_the_articles_and_keeps_one_half(tmp_path: Path) -> None:
    test = load_kb(tmp_path, half="test")
    files = sorted(p.name for p in test.root.glob("*.md"))
    assert len(files) >= 100 and test.profile == "docs"
    assert all(half_of(q.id) == "test" for q in test.questions)
    assert all(isinstance(g, ArticleGold) and g.path in files for q in test.questions for g in q.gold)
    tune = load_kb(tmp_path, half="tune")
    assert {q.id for q in tune.questions}.isdisjoint(q.id for q in test.questions)
    assert len(tune.questions) + len(test.questions) == len(kb_data()[1])
    assert len(load_kb(tmp_path, limit=7).questions) == 7


def test_html_becomes_markdown_sections() -> None:
    text = to_markdown("<h2>Our &amp; Team</h2>\n <p>Leads  <em>data</em>.</p><h3>Roles</h3><ul><li>One<br>two</li>"
                       "<li>Three</li></ul>")
    assert text == "# Our & Team\n\nLeads data.\n\n## Roles\n\n- One two\n- Three\n"


def test_an_article_counts_only_when_cited() -> None:
    articles, questions = kb_data()
    question = questions[0]
    gold = question.gold[0]
    other = next(a.id for a in articles if a.id != gold)
    named_only = Snippet(other, 1, 3, f"see {gold}")
    cited = Snippet(gold, 4, 9, "text")
    assert article_recall(question, {other}) == 0.0 and article_recall(question, {gold, other}) == 1.0
    bench_question = Question(id=question.id, text=question.text, gold=(ArticleGold(gold),))
    assert recall(bench_question, [named_only]) == 0.0
    assert recall(bench_question, [named_only, cited]) == 1.0


"""The LLM layer against a real OpenAI-compatible HTTP server on a loopback port (scripted per
test): verified evidence, dropped claims, malformed JSON, 429 and timeouts, the budget, the
dry-run estimate, and nothing at all when no endpoint is configured."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import select

from sleepd import llm_budget
from sleepd.cli import cli
from sleepd.embed import Embedder
from sleepd.errors import ConfigError
from sleepd.ledger import Ledger
from sleepd.records import RecordKind
from sleepd.scheduler import Scheduler
from sleepd.schema import ItemRow, LlmUsageRow, RecordRow
from sleepd.settings import Settings, load_settings, source_from_path
from sleepd.status import status_report
from workers.tasks import PIPELINE_VERSION, Outcome, pipeline_version, read_item, run_enrichment

BILLING = '''"""Billing helpers: charge an account through the payment gateway."""

LIMIT = 500


def charge(account, amount):
    """Charge an account, refusing amounts over the limit."""
    if amount > LIMIT:
        raise ValueError("over limit")
    return gateway.send(account, amount)


def refund(account, amount):
    return gateway.send(account, -amount)
'''


def span(start: int, end: int, quote: str) -> dict[str, Any]:
    return {"start_line": start, "end_line": end, "quote": quote}


GOOD = {
    "summary": {"text": "Charges and refunds accounts through the gateway, with a 500 limit.",
                "evidence": [span(1, 1, "Billing helpers"), span(3, 3, "LIMIT = 500")]},
    "relations": [{"subject": "charge", "relation": "calls", "object": "gateway.send",
                   "evidence": [span(10, 10, "return   gateway.send(account, amount)")]}],
    "qa": [{"question": "What is the largest amount charge accepts?", "answer": "500; more raises ValueError.",
            "evidence": [span(8, 9, 'if amount > LIMIT: raise ValueError("over limit")')]}],
    "risks": [{"risk": "refund has no limit", "explanation": "any amount can be refunded",
               "evidence": [span(13, 14, "def refund(account, amount):")]}],
}


@dataclass
class Reply:
    """One scripted answer: a JSON body (or raw text content), a status, headers, a delay."""

    answer: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0
    usage: tuple[int, int] = (1234, 210)
    raw: str | None = None


class FakeLLM:
    """POST /v1/chat/completions, answering from a script; records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reject_schema = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "no such route"}})
                if fake.reject_schema and body["response_format"]["type"] == "json_schema":
                    return self._send(400, {"error": {"message": "response_format json_schema unsupported"}})
                reply = fake.script.pop(0) if fake.script else Reply(status=500, answer={"error": "script ran out"})
                time.sleep(reply.sleep)
                if reply.status != 200:
                    return self._send(reply.status, {"error": {"message": "scripted"}}, reply.headers)
                content = reply.raw if reply.raw is not None else json.dumps(reply.answer)
                prompt, completion = reply.usage
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture
def llm_settings(settings: Settings, fake_llm: FakeLLM) -> Settings:
    return replace(settings, llm_base_url=fake_llm.url, llm_model="fake-model", llm_api_key="sk-test",
                   llm_timeout_seconds=0.5, llm_price_per_1k_input=0.5, llm_price_per_1k_output=1.5)


@pytest.fixture
def billing(tmp_path: Path, ledger: Ledger) -> Callable[[], int]:
    """billing.py in a watched folder, observed by the ledger; returns a function giving its id."""
    repo = tmp_path / "repo"
    repo.mkdir()
    path = repo / "billing.py"
    path.write_text(BILLING)
    source = source_from_path(repo, name="repo")
    ledger.save_source(source)
    loaded = read_item(path, 10**6)
    assert loaded is not None
    st = path.stat()
    ledger.observe("repo", "billing.py", loaded[1], st.st_size, st.st_mtime_ns)
    return lambda: ledger.known_items("repo")["billing.py"].id or 0


def enrich(ledger: Ledger, embedder: Embedder, settings: Settings, item_id: int) -> Outcome:
    return run_enrichment(ledger, embedder, settings, item_id)


def records(ledger: Ledger, item_id: int) -> list[RecordRow]:
    with ledger.read() as s:
        return list(s.exec(select(RecordRow).where(RecordRow.item_id == item_id)).all())


def usage(ledger: Ledger) -> list[LlmUsageRow]:
    with ledger.read() as s:
        return list(s.exec(select(LlmUsageRow).order_by(LlmUsageRow.id)).all())  # type: ignore[arg-type]


def llm_kinds(rows: list[RecordRow]) -> list[str]:
    ours = {k.value for k in (RecordKind.SUMMARY, RecordKind.QA, RecordKind.RELATION, RecordKind.RISK)}
    return sorted(r.kind for r in rows if r.kind in ours)


def test_good_answer_publishes_verified_records_and_records_usage(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    fake_llm.script = [Reply(GOOD)]
    outcome = enrich(ledger, embedder, llm_settings, billing())
    assert (outcome.status, outcome.llm) == ("published", "ok")
    rows = records(ledger, billing())
    assert llm_kinds(rows) == ["qa", "relation", "risk", "summary"]
    assert any(r.kind == "symbol" for r in rows)  # the deterministic records are still there
    qa = next(r for r in rows if r.kind == "qa")
    assert qa.title == "What is the largest amount charge accepts?"
    assert json.loads(qa.evidence) == [{"path": "billing.py", "start_line": 8, "end_line": 9}]
    summary = next(r for r in rows if r.kind == "summary")
    assert [e["start_line"] for e in json.loads(summary.evidence)] == [1, 3]

    # one request: structured output, the model named, numbered lines and the key sent
    (request,) = fake_llm.requests
    assert request["model"] == "fake-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["summary", "relations", "qa", "risks"]
    assert "6| def charge(account, amount):" in request["messages"][1]["content"]
    assert "symbol: billing.charge (lines 6-10)" in request["messages"][1]["content"]
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-test"

    (row,) = usage(ledger)
    assert (row.outcome, row.prompt_tokens, row.completion_tokens, row.dropped) == ("ok", 1234, 210, 0)
    assert row.cost == pytest.approx(1.234 * 0.5 + 0.210 * 1.5)
    assert (row.source, row.item_id, row.model) == ("repo", billing(), "fake-model")

    item = ledger.item(billing())
    assert item is not None and item.pipeline_version == f"{PIPELINE_VERSION}+llm:fake-model"
    assert pipeline_version(llm_settings) == item.pipeline_version
    # the same content and model: nothing is asked again
    assert enrich(ledger, embedder, llm_settings, billing()).status == "unchanged"
    assert len(fake_llm.requests) == 1

    status = status_report(ledger, llm_settings)["llm"]
    assert status["model"] == "fake-model" and status["tokens_today"] == 1444 and status["calls"] == 1
    assert status["budget_left"] == llm_settings.llm_daily_tokens - 1444
    assert "sk-test" not in json.dumps(status) and "sk-test" not in repr(llm_settings)


def test_made_up_evidence_is_dropped_and_counted(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    answer = json.loads(json.dumps(GOOD))
    answer["relations"].append({"subject": "charge", "relation": "logs to", "object": "audit",
                                "evidence": [span(10, 10, "audit.log(account)")]})  # not in the file
    answer["qa"].append({"question": "Where is line 99?", "answer": "nowhere",
                         "evidence": [span(99, 99, "LIMIT")]})  # no such line
    answer["risks"].append({"risk": "half real", "explanation": "one good span, one invented",
                            "evidence": [span(3, 3, "LIMIT = 500"), span(4, 4, "LIMIT = 500")]})
    answer["qa"].append({"question": "No evidence?", "answer": "none", "evidence": []})
    fake_llm.script = [Reply(answer)]
    outcome = enrich(ledger, embedder, llm_settings, billing())
    assert outcome.llm == "ok"
    rows = records(ledger, billing())
    assert llm_kinds(rows) == ["qa", "relation", "risk", "summary"]  # only the real ones
    assert not any("audit" in r.text or "half real" in r.text for r in rows)
    (row,) = usage(ledger)
    assert row.dropped == 4
    assert status_report(ledger, llm_settings)["llm"]["dropped_claims"] == 4


def test_malformed_json_is_retried_once_then_skipped_with_a_reason(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    fake_llm.script = [Reply(raw='{"summary": {"text": "cut off'), Reply(raw="Sure! Here are the notes")]
    outcome = enrich(ledger, embedder, llm_settings, billing())
    assert (outcome.status, outcome.llm) == ("published", "malformed")
    assert len(fake_llm.requests) == 2
    rows = records(ledger, billing())
    assert llm_kinds(rows) == [] and any(r.kind == "symbol" for r in rows)
    first, second = usage(ledger)
    assert first.outcome == second.outcome == "malformed"
    assert second.error is not None and "not JSON" in second.error
    assert first.prompt_tokens == 1234  # the tokens were spent all the same
    # two malformed answers count as done for this model: not asked again every idle round
    item = ledger.item(billing())
    assert item is not None and item.pipeline_version == pipeline_version(llm_settings)


def test_429_with_retry_after_then_success(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    fake_llm.script = [Reply(status=429, headers={"Retry-After": "1"}), Reply(GOOD)]
    started = time.monotonic()
    outcome = enrich(ledger, embedder, llm_settings, billing())
    assert outcome.llm == "ok"
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert [r.outcome for r in usage(ledger)] == ["rate_limited", "ok"]
    assert usage(ledger)[0].prompt_tokens == 0  # a refused request costs nothing
    assert llm_kinds(records(ledger, billing())) == ["qa", "relation", "risk", "summary"]


def test_timeout_is_retried_and_a_dead_endpoint_leaves_the_item_for_later(
        tmp_path: Path, ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    fake_llm.script = [Reply(GOOD, sleep=1.5), Reply(GOOD)]
    assert enrich(ledger, embedder, llm_settings, billing()).llm == "ok"
    timeout, ok = usage(ledger)
    assert (timeout.outcome, ok.outcome) == ("timeout", "ok")
    assert timeout.prompt_tokens > 0  # the model may have read it: charged to be safe

    # every attempt times out: deterministic records only, under the plain version, to be redone
    path = tmp_path / "repo" / "billing.py"
    path.write_text(BILLING + "\n# v2\n")
    loaded = read_item(path, 10**6)
    assert loaded is not None
    ledger.observe("repo", "billing.py", loaded[1], 1, 1)
    fake_llm.script = [Reply(GOOD, sleep=1.0) for _ in range(4)]
    outcome = enrich(ledger, embedder, llm_settings, billing())
    assert (outcome.status, outcome.llm) == ("published", "unavailable")
    assert [r.outcome for r in usage(ledger)][2:] == ["timeout"] * 4
    item = ledger.item(billing())
    assert item is not None and item.pipeline_version == PIPELINE_VERSION
    assert llm_kinds(records(ledger, billing())) == []
    # and right after a failure the scheduler does not send items back to the model
    target, _ = llm_budget.outdated_target(ledger, llm_settings, pipeline_version(llm_settings))
    assert target == PIPELINE_VERSION


def test_budget_exhausted_makes_no_call_and_the_item_is_picked_up_when_budget_returns(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    poor = replace(llm_settings, llm_daily_tokens=1000)
    outcome = enrich(ledger, embedder, poor, billing())
    assert (outcome.status, outcome.llm) == ("published", "budget_exhausted")
    assert fake_llm.requests == []
    (row,) = usage(ledger)
    assert row.outcome == "budget_exhausted" and row.prompt_tokens == 0
    assert row.error is not None and "left today: 1000 in all" in row.error
    item = ledger.item(billing())
    assert item is not None and item.pipeline_version == PIPELINE_VERSION  # deterministic part published
    assert any(r.kind == "symbol" for r in records(ledger, billing()))

    sent: list[int] = []
    # no budget: the scheduler does not queue the item again (no spinning on skips)
    Scheduler(ledger, poor, lambda batch: sent.extend(i for i, _ in batch), pipeline_version(poor)).tick()
    assert sent == []
    # a source's own budget spent: its items wait, the total budget notwithstanding
    with ledger.write() as s:
        s.add(LlmUsageRow(at=time.time(), source="repo", item_id=0, model="fake-model", prompt_tokens=999_000,
                          outcome="ok"))
    Scheduler(ledger, llm_settings, lambda batch: sent.extend(i for i, _ in batch),
              pipeline_version(llm_settings)).tick()
    assert sent == []
    # the next UTC day: yesterday's spending no longer counts, the item is sent back to the model
    with ledger.write() as s:
        for spent in s.exec(select(LlmUsageRow)).all():
            spent.at -= 86_400
    Scheduler(ledger, llm_settings, lambda batch: sent.extend(i for i, _ in batch),
              pipeline_version(llm_settings)).tick()
    assert sent == [billing()]
    fake_llm.script = [Reply(GOOD)]
    assert enrich(ledger, embedder, llm_settings, billing()).llm == "ok"
    item = ledger.item(billing())
    assert item is not None and item.pipeline_version == pipeline_version(llm_settings)


def test_endpoint_without_json_schema_gets_json_object(
        ledger: Ledger, embedder: Embedder, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    fake_llm.reject_schema = True
    fake_llm.script = [Reply(GOOD)]
    assert enrich(ledger, embedder, replace(llm_settings, llm_model="no-schema-model"), billing()).llm == "ok"
    assert [r["response_format"]["type"] for r in fake_llm.requests] == ["json_schema", "json_object"]
    assert "JSON" in fake_llm.requests[1]["messages"][0]["content"]


def test_estimate_counts_without_calling_the_model(
        tmp_path: Path, ledger: Ledger, llm_settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    from workers.llm import estimate_pass

    billing()
    report = estimate_pass(ledger, llm_settings)
    assert report["items"] == 1 and report["by_source"]["repo"]["items"] == 1
    assert 500 < report["input_tokens"] < 3000  # instructions + schema + titles + the numbered file
    assert report["output_tokens_estimate"] >= 200
    assert report["cost"] == pytest.approx(report["input_tokens"] / 1000 * 0.5
                                           + report["output_tokens_estimate"] / 1000 * 1.5, abs=1e-5)
    env = {"SLEEPD_HOME": str(llm_settings.home), "SLEEPD_LLM_BASE_URL": fake_llm.url,
           "SLEEPD_LLM_MODEL": "fake-model", "SLEEPD_LLM_PRICE_PER_1K_INPUT": "0.5",
           "SLEEPD_LLM_PRICE_PER_1K_OUTPUT": "1.5", "SLEEPD_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    result = CliRunner().invoke(cli, ["llm", "estimate", "--source", "repo", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["input_tokens"] == report["input_tokens"]
    assert fake_llm.requests == []


def test_no_endpoint_configured_means_no_llm_at_all(
        ledger: Ledger, embedder: Embedder, settings: Settings, fake_llm: FakeLLM,
        billing: Callable[[], int]) -> None:
    assert not settings.llm_enabled and pipeline_version(settings) == PIPELINE_VERSION
    outcome = enrich(ledger, embedder, settings, billing())
    assert (outcome.status, outcome.llm) == ("published", None)
    assert llm_kinds(records(ledger, billing())) == []
    assert fake_llm.requests == [] and usage(ledger) == []
    assert "llm" not in status_report(ledger, settings)
    with ledger.read() as s:
        item = s.get(ItemRow, billing())
    assert item is not None and item.pipeline_version == PIPELINE_VERSION


def test_llm_settings_from_file_and_env(tmp_path: Path) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text('[sleepd]\nllm_base_url = "http://127.0.0.1:9/v1"\nllm_model = "m"\nllm_daily_tokens = 5000\n')
    env = {"SLEEPD_HOME": str(tmp_path), "SLEEPD_CONFIG": str(config), "SLEEPD_LLM_API_KEY": "sk-secret"}
    loaded = load_settings(env)
    assert (loaded.llm_model, loaded.llm_daily_tokens, loaded.llm_api_key) == ("m", 5000, "sk-secret")
    assert loaded.llm_enabled and "sk-secret" not in repr(loaded)
    config.write_text('[sleepd]\nllm_base_url = "http://127.0.0.1:9/v1"\n')
    with pytest.raises(ConfigError, match="'llm_model' is missing"):
        load_settings(env)
    config.write_text('[sleepd]\nllm_base_url = "localhost:8000"\nllm_model = "m"\n')
    with pytest.raises(ConfigError, match="'llm_base_url' has value 'localhost:8000'"):
        load_settings(env)

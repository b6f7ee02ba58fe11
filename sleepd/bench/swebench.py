"""The code corpus: SWE-bench Lite issues over each project's own source, taken from its sdist.

The question is the issue text; the gold evidence is each function or class the fix touched
(``expected_spans``), located in the chosen version by parsing the file with :mod:`ast`.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sleepd import defaults
from sleepd.bench.corpora import Corpus, Question, SpanGold
from sleepd.bench.split import in_half
from sleepd.errors import ConfigError, SleepdError

__all__ = ["CODE_RULE", "DEFAULT_REPOS", "QUICK_REPOS", "SDISTS", "fetch_sdist", "load_code"]

CODE_RULE = ("a gold function is recalled when a packed record (or chunk) cites its file with a line span that "
             "covers the line of its definition (found with Python's ast in the version used) and its text names "
             "the function; a span over the whole file (a file summary) does not count. Spans named 'imports' or "
             "module-level 'impl:N' are not functions and are not scored.")
#: per repository, the PyPI distribution and the sdist version indexed: the release nearest the
#: middle of that repository's issues in which the files the fixes touch exist
SDISTS: dict[str, tuple[str, str]] = {
    "psf/requests": ("requests", "2.10.0"),
    "pallets/flask": ("Flask", "2.3.2"),
    "pytest-dev/pytest": ("pytest", "5.4.3"),
    "pylint-dev/pylint": ("pylint", "2.15.0"),
    "mwaskom/seaborn": ("seaborn", "0.12.1"),
    "pydata/xarray": ("xarray", "0.18.0"),
    "astropy/astropy": ("astropy", "4.3"),
    "sphinx-doc/sphinx": ("Sphinx", "3.5.0"),
    "matplotlib/matplotlib": ("matplotlib", "3.3.0"),
    "scikit-learn/scikit-learn": ("scikit-learn", "0.22"),
    "sympy/sympy": ("sympy", "1.6"),
    "django/django": ("Django", "3.0"),
}
#: the smallest sdist of the twelve: what --quick indexes
QUICK_REPOS = ("psf/requests",)
#: five small projects (seaborn and Sphinx added for the test half, issue 12): a run on two shared
#: cores stays within minutes. pylint and xarray are left out: their sdists cannot be fetched
#: without building them (pip download builds the metadata of a pyproject sdist)
DEFAULT_REPOS = ("psf/requests", "pallets/flask", "pytest-dev/pytest", "mwaskom/seaborn", "sphinx-doc/sphinx")
#: spans in expected_spans that are not a def or class
_NOT_SYMBOLS = ("imports",)


def fetch_sdist(dist: str, version: str, cache: Path) -> Path:
    """The unpacked sdist of ``dist==version`` under ``cache`` (downloaded once with pip)."""
    target = cache / "src" / f"{dist}-{version}"
    if target.is_dir():
        return target
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = _find_archive(downloads, dist, version)
    if archive is None:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{dist}=={version}", "-d", str(downloads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archive = _find_archive(downloads, dist, version)
        if done.returncode != 0 or archive is None:
            raise SleepdError(f"pip download of {dist}=={version} failed: {done.stderr.strip()[-400:]}")
    staging = cache / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(staging, filter="data")
    tops = [p for p in staging.iterdir() if p.is_dir()]
    top = tops[0] if len(tops) == 1 else staging
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(top), str(target))
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _find_archive(folder: Path, dist: str, version: str) -> Path | None:
    stems = {f"{dist}-{version}".lower(), f"{dist.replace('-', '_')}-{version}".lower()}
    for path in folder.iterdir():
        name = path.name.lower()
        for suffix in (".tar.gz", ".zip", ".tar.bz2"):
            if name.endswith(suffix) and name[: -len(suffix)] in stems:
                return path
    return None


def definitions(source: str) -> dict[str, int]:
    """Qualified name (``Class.method``) -> line of its ``def``/``class`` statement."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                found.setdefault(name, child.lineno)
                visit(child, f"{name}.")
            elif isinstance(child, ast.If | ast.Try | ast.With):
                visit(child, prefix)  # definitions under `if TYPE_CHECKING:` / `try:` at the same level

    visit(ast.parse(source), "")
    return found


def _locate(name: str, defs: Mapping[str, int]) -> int | None:
    """The def line of ``name``; failing an exact match, the one definition with its last part
    (a method that moved to a mixin between versions)."""
    if name in defs:
        return defs[name]
    short = name.rsplit(".", 1)[-1]
    matches = [line for qual, line in defs.items() if qual.rsplit(".", 1)[-1] == short]
    return matches[0] if len(matches) == 1 else None


def _gold(repo_dir: str, root: Path, spans: Mapping[str, Sequence[str]]) -> tuple[list[SpanGold], int]:
    gold: list[SpanGold] = []
    missing = 0
    for file, names in spans.items():
        path = root / repo_dir / file
        try:
            text = path.read_text(encoding="utf-8")
            defs = definitions(text)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            missing += sum(1 for n in names if n not in _NOT_SYMBOLS and not n.startswith("impl:"))
            continue
        lines = len(text.splitlines())
        for name in names:
            if name in _NOT_SYMBOLS or name.startswith("impl:"):
                continue
            line = _locate(name, defs)
            if line is None:
                missing += 1
            else:
                gold.append(SpanGold(path=f"{repo_dir}/{file}", name=name, line=line, file_lines=lines))
    return gold, missing


def patch_files(patch: str) -> list[str]:
    """The files a unified diff changes, in order (``diff --git a/X b/X``, else ``+++ b/X``)."""
    found: list[str] = []
    for line in patch.splitlines():
        path = None
        if line.startswith("diff --git "):
            path = line.rsplit(" b/", 1)[-1] if " b/" in line else None
        elif line.startswith("+++ b/"):
            path = line[len("+++ b/"):].split("\t")[0]
        if path and path not in found:
            found.append(path)
    return found


def gold_files(label: str, root: Path, issue: Mapping[str, object]) -> tuple[str, ...]:
    """The files the fix touched (``expected_spans`` keys and the golden patch's files) that exist
    in the version indexed, as the corpus cites them (``<label>/<path>``)."""
    spans = issue.get("expected_spans")
    names = list(spans) if isinstance(spans, Mapping) else []
    patch = issue.get("golden_patch")
    names += [f for f in patch_files(patch) if f not in names] if isinstance(patch, str) else []
    return tuple(f"{label}/{f}" for f in names if f.endswith(".py") and (root / label / f).is_file())


def load_code(data: Path, work: Path, cache: Path, repos: Sequence[str], max_issues: int | None,
              local_roots: Mapping[str, Path] | None = None, half: str = "all") -> Corpus:
    """SWE-bench Lite issues of ``repos`` in ``half`` (up to ``max_issues`` per repository, in file
    order), over the Python files of each project's sdist (or of ``local_roots[repo]``, a folder
    laid out like the repository, which skips the download). Each question carries its gold
    functions and, for file-level scoring, the files the fix touched."""
    table = data / "swebench-lite.jsonl"
    if not table.is_file():
        raise ConfigError(f"Config 'data' has value {str(data)!r}. Expected {table}.")
    unknown = [r for r in repos if r not in SDISTS and r not in (local_roots or {})]
    if unknown:
        raise ConfigError(f"Config 'repos' has value {unknown!r}. Known: {', '.join(SDISTS)}.")
    issues = [json.loads(line) for line in table.read_text(encoding="utf-8").splitlines() if line.strip()]
    root = work / "code"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    questions: list[Question] = []
    notes: list[str] = []
    for repo in repos:
        if local_roots and repo in local_roots:
            source, label = local_roots[repo], repo.replace("/", "__")
        else:
            dist, version = SDISTS[repo]
            source, label = fetch_sdist(dist, version, cache), f"{dist}-{version}"
        shutil.copytree(source, root / label, ignore=_only_python)
        picked = [i for i in issues if i["repo"] == repo and in_half("code", f"{repo}/{i['instance_id']}", half)]
        picked = picked[:max_issues]
        asked = unresolved = 0
        for issue in picked:
            gold, missing = _gold(label, root, issue["expected_spans"])
            unresolved += missing
            if not gold:
                continue
            asked += 1
            questions.append(Question(id=issue["instance_id"], gold=tuple(gold), files=gold_files(label, root, issue),
                                      text=issue["problem_statement"].strip()[: defaults.MAX_QUERY_CHARS]))
        notes.append(f"{repo}: {label}, {asked} of {len(picked)} issues of the {half} half asked ({unresolved} gold "
                     "functions not found in this version and left out)")
    return Corpus(name="code", root=root, profile="code", questions=questions, rule=CODE_RULE,
                  include=("**/*.py",), notes=notes)


def _only_python(folder: str, names: list[str]) -> list[str]:
    """copytree filter: keep folders and .py files."""
    return [n for n in names if not n.endswith(".py") and not Path(folder, n).is_dir()]

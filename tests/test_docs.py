"""The documentation's links resolve, and the README stays a front page."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "bench" / "README.md",
    ROOT / "examples" / "README.md",
    ROOT / "saved_models" / "README.md",
]
LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", page.read_text(), re.M)}


def _links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.is_file()
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert broken == []


def test_no_link_leaves_the_repository():
    for page in PAGES:
        for target in _links(page):
            path = target.partition("#")[0]
            if path:
                assert ROOT in (page.parent / path).resolve().parents, (page.name, target)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 210
    blocks = re.findall(r"```bash\n(.*?)```", "\n".join(lines[:20]), re.S)
    assert "keras-skipae demo" in blocks[0]
    assert "python -m pytest" in blocks[1]


def test_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "x.md"
    (tmp_path / "there.md").write_text("# Here we are\n")
    page.write_text("[a](there.md#here-we-are) [b](missing.md) [c](there.md#nope)\n")
    found = [t for t in _links(page)]
    assert found == ["there.md#here-we-are", "missing.md", "there.md#nope"]
    assert _anchors(tmp_path / "there.md") == {"here-we-are"}

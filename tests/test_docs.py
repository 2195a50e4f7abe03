"""The documentation: links resolve, the README is a front page, the package tree is the code."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
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


# --------------------------------------------------------------------------- the package tree

ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w.]+(?:\.py|/))(?:\s{2,}(?P<role>\S.*))?$")


def tree_modules(text: str) -> dict[str, str]:
    """The modules of the "## Package tree" block of a page: ``{dotted name: role}``.

    One entry per line, two spaces of indent per level: ``name.py  role`` or ``name/  role``
    (a package; its line stands for its ``__init__.py``). A line that is not an entry
    continues the role above it.
    """
    section = re.search(r"^## Package tree\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        raise ValueError("The page has no section '## Package tree'. Received: no such heading")
    block = re.search(r"```\n(.*?)```", section.group(1), re.S)
    modules, stack = {}, []
    for line in block.group(1).splitlines():
        entry = ENTRY.match(line)
        if entry is None:
            if not modules or not line.startswith(" " * (2 * len(stack) + 4)):
                raise ValueError(f"Not a tree entry nor a continuation. Received: line={line!r}")
            continue
        depth, name = len(entry["indent"]) // 2, entry["name"]
        if len(entry["indent"]) % 2 or depth > len(stack):
            raise ValueError(f"Indented by 2 spaces per level. Received: line={line!r}")
        if not entry["role"]:
            raise ValueError(f"Every entry has a one-line role. Received: line={line!r}")
        del stack[depth:]
        dotted = ".".join([*stack, name.removesuffix("/").removesuffix(".py")])
        if dotted in modules:
            raise ValueError(f"Listed twice. Received: {dotted}")
        modules[dotted] = entry["role"]
        if name.endswith("/"):
            stack.append(name.removesuffix("/"))
    return modules


def disk_modules(*packages: Path) -> set[str]:
    """The dotted names of every package and module under ``packages``."""
    found = set()
    for package in packages:
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_architecture_tree_matches_the_modules_on_disk():
    listed = set(tree_modules((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")))
    on_disk = disk_modules(ROOT / "keras_skipae", ROOT / "keras_skipae_cli")
    assert sorted(on_disk - listed) == [], "modules without a line in docs/ARCHITECTURE.md"
    assert sorted(listed - on_disk) == [], "lines of docs/ARCHITECTURE.md without a module"


def test_tree_parser_reads_nesting_and_refuses_bad_lines(tmp_path):
    page = "## Package tree\n\n```\npkg/        the package\n  a.py       one\n{}```\n"
    good = "  sub/       a sub-package\n    b.py     two,\n             continued\n  c.py  three\n"
    assert tree_modules(page.format(good)) == {
        "pkg": "the package",
        "pkg.a": "one",
        "pkg.sub": "a sub-package",
        "pkg.sub.b": "two,",
        "pkg.c": "three",
    }
    for bad, match in [
        ("  d.py\n", "one-line role"),
        ("   d.py  odd indent\n", "2 spaces per level"),
        ("      d.py  too deep\n", "2 spaces per level"),
        ("  a.py  again\n", "Listed twice"),
        ("stray words\n", "Not a tree entry"),
    ]:
        with pytest.raises(ValueError, match=match):
            tree_modules(page.format(bad))
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for rel in ("pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py"):
        (tmp_path / rel).write_text("")
    assert disk_modules(tmp_path / "pkg") == {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b"}

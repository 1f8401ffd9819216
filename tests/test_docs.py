"""The documentation: every relative link resolves, every file it quotes is quoted exactly, and
it points at nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_READMES = sorted((ROOT / "examples").glob("*/README.md"))

#: ``[text](target)`` and ``![alt](target)``, not inside code.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", markdown), re.M):
        text = re.sub(r"[`*_]", "", heading).strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def _links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("doc", DOCS + EXAMPLE_READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    links = _links(doc)
    assert links or doc.name == "bench-schema.md"
    for link in links:
        if re.match(r"^[a-z]+:", link):  # http(s), mailto: not ours to check
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), f"{doc.name}: {link} does not exist"
        assert path == ROOT or ROOT in path.parents, f"{doc.name}: {link} leaves the repository"
        if anchor:
            assert path.suffix == ".md", f"{doc.name}: {link} is an anchor into a non-Markdown file"
            assert anchor in _anchors(path.read_text(encoding="utf-8")), (
                f"{doc.name}: {link}: no heading #{anchor} in {path.name}"
            )


def test_nothing_points_outside_the_repository() -> None:
    """A clone has no team folder beside it: the docs never send a reader there."""
    beside = re.compile(r"\.\./shared\b")
    for doc in [*DOCS, *EXAMPLE_READMES]:
        assert not beside.search(doc.read_text(encoding="utf-8")), doc


def test_quoted_files_are_the_tested_example_files() -> None:
    """A caption naming a file, then a code block: the block is that file, exactly."""
    quoted = re.compile(r"^`(examples/[^`]+)`:\s*```\w*\n(.*?)```", re.S | re.M)
    seen = []
    for doc in DOCS:
        for name, block in quoted.findall(doc.read_text(encoding="utf-8")):
            assert block == (ROOT / name).read_text(encoding="utf-8"), f"{doc.name}: {name}"
            seen.append(name)
    for package in ("zoo-plugin-example", "zoo-openvino", "zoo-regression"):
        assert f"examples/{package}/pyproject.toml" in seen, package


def test_readme_is_the_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for doc in ("user-guide.md", "plugins.md", "architecture.md", "benchmarks.md"):
        assert f"docs/{doc}" in readme, doc


def test_the_architecture_page_draws_the_import_contract() -> None:
    """The layers the page draws are the layers ``make lint`` enforces, in the same order."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    layers = config["importlinter:contract:layers"]["layers"].split()
    enforced = [name for name in layers if name != "|"]
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page[page.index("## Layers") :]
    drawn = section[section.index("```") + 3 :]
    drawn = drawn[: drawn.index("```")]
    assert re.findall(r"^(?:\| )?(zoo[\w.]*)", drawn.replace(" | ", "\n| "), re.M) == enforced

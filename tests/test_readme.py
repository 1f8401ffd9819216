"""The README's plugin tutorial must be the example package that the tests install and run."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "zoo-plugin-example"


def _block_after(text: str, caption: str, lang: str) -> str:
    match = re.search(re.escape(caption) + r"\s*```" + lang + r"\n(.*?)```", text, re.S)
    assert match, f"no ```{lang} block after {caption!r} in README.md"
    return match.group(1)


def test_write_a_plugin_listings_are_the_tested_example_files() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Write a plugin") :]
    assert (
        _block_after(section, "`pyproject.toml`:", "toml")
        == (EXAMPLE / "pyproject.toml").read_text()
    )
    assert (
        _block_after(section, "`src/zoo_plugin_example/__init__.py`:", "python")
        == (EXAMPLE / "src" / "zoo_plugin_example" / "__init__.py").read_text()
    )


def test_readme_names_the_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()

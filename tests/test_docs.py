"""The repository's documentation: relative links resolve, and the layer rules it states hold."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # links in code are not links
    out = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s):, mailto:, in-page anchors
        out.append(target.split("#")[0])
    return out


def test_docs_exist():
    assert (ROOT / "docs" / "architecture.md").is_file()
    assert "docs/architecture.md" in _relative_links(ROOT / "README.md")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    missing = [t for t in _relative_links(path) if not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"
    assert "../shared" not in path.read_text(), f"{path.name} points outside the repository"


def _imports(package: str) -> set[str]:
    found = set()
    for f in (ROOT / "probdyn" / package).glob("*.py"):
        for m in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", f.read_text(), flags=re.M):
            found.add(m.group(1))
    return found


def test_layer_rules_stated_in_architecture_hold():
    assert not {m for m in _imports("kernels") if m.split(".")[0] == "numpyro"}
    assert not {m for m in _imports("processes") if m.startswith("probdyn.infer")}

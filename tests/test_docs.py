"""The documentation's links resolve, and the code points at documents that exist."""

import re

from conftest import ROOT

MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py")), ROOT / "params.yaml",
        ROOT / "dvc.yaml", *sorted((ROOT / ".github").rglob("*.yml"))]


def test_every_relative_markdown_link_resolves():
    broken = []
    for page in MARKDOWN:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+://", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_code_and_params_cite_documents_that_exist_not_readme_sections():
    cited, missing = 0, []
    for file in CODE:
        text = file.read_text()
        for path in re.findall(r"\bdocs/[\w./-]+\.md\b", text):
            cited += 1
            if not (ROOT / path).is_file():
                missing.append(f"{file.relative_to(ROOT)} -> {path}")
        assert not re.search(r"\(README, ", text), f"{file.relative_to(ROOT)} cites a README section; cite docs/ instead"
    assert cited >= 5 and not missing, missing


def test_readme_stays_a_short_users_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200

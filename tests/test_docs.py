"""The documentation keeps up with the code: every module is in the architecture page,
every relative link of the README and docs/ leads to a file that exists, and every figure
the README quotes is one that docs/benchmarks.md holds (with its command and date)."""

from __future__ import annotations

import re

from support.images import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_module_is_in_the_architecture_page() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    modules = sorted(str(p.relative_to(REPO / "pipeline")) for p in (REPO / "pipeline").rglob(
        "*.py") if p.name != "__init__.py" or p.parent.name in ("executors", "ray", "watch"))
    missing = [m for m in modules if f"`{m}`" not in page]
    assert not missing, f"not in docs/architecture.md: {missing}"


def test_relative_links_lead_to_files() -> None:
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


#: Figures in the README's prose that are settings, not measurements.
NOT_MEASURED = {"0.5"}


def test_the_readme_quotes_only_figures_the_benchmarks_page_holds() -> None:
    text = (REPO / "README.md").read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands and examples
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"^    .*$", "", text, flags=re.M)
    figures = set(re.findall(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![\w.])", text))
    held = (REPO / "docs" / "benchmarks.md").read_text()
    stale = sorted(f for f in figures - NOT_MEASURED if f not in held)
    assert not stale, f"quoted in the README, not in docs/benchmarks.md: {stale}"

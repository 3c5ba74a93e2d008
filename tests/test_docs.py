"""The documentation keeps up with the code: every module is in the architecture page,
and every relative link of the README and docs/ leads to a file that exists."""

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

"""The user documents: a short README that leads to docs/, links that resolve, no tracker talk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
USER_DOCUMENTS = [README, *DOCS, REPO / "cluster" / "README.md"]

# [text](target) outside code; images too. A target with a scheme (https:, mailto:) is not ours.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
# "issue 14", "issue #14", "Issue 15's", and a bare "#14"; "owner/repo#14" is another project's.
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+|(?<![\w/.-])#\d+\b", re.IGNORECASE)


def _prose(path: Path) -> str:
    """The document without fenced code blocks (transcripts may hold anything) or inline code."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_readme_is_a_front_door_of_at_most_250_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move sections into docs/"


def test_readme_links_every_docs_page() -> None:
    linked = {m for m in LINK.findall(README.read_text())}
    missing = [p.name for p in DOCS if f"docs/{p.name}" not in linked]
    assert DOCS and not missing, f"README.md does not link to {missing}"


@pytest.mark.parametrize("document", USER_DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file_and_heading(document: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(document)):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved.relative_to(REPO)})")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{document.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("document", USER_DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_user_document_cites_this_projects_issue_numbers(document: Path) -> None:
    found = ISSUE_NUMBER.findall(document.read_text())
    assert not found, f"{document.relative_to(REPO)} mentions {found}: say what, not which issue"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The patterns themselves: an issue number is caught, another project's is not."""
    assert ISSUE_NUMBER.findall("see issue 14, and #15") == ["issue 14", "#15"]
    assert not ISSUE_NUMBER.findall("ray-project/ray#64231 and keras-team/keras#17458")
    assert _slug("Datasets (`--dataset`)") == "datasets---dataset"
    assert _slug("The original grid end to end: the service against the notebook's way") == (
        "the-original-grid-end-to-end-the-service-against-the-notebooks-way"
    )

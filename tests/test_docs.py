"""Every relative link in the README and the pages under docs/ and tools/ resolves: the file exists and, for a
link to a section, the section does (GitHub's heading anchors)."""

import glob
import os
import re

import pytest
from conftest import REPO

PAGES = sorted(["README.md", "BENCHMARKS.md",
                *(os.path.relpath(path, REPO) for pattern in ("docs/*.md", "tools/README.md", "tools/*/README.md")
                  for path in glob.glob(os.path.join(REPO, pattern)))])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    with open(path, encoding="utf-8") as f:
        headings = [line.lstrip("#").strip() for line in f if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def relative_links(page):
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # code blocks hold no links
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    assert relative_links("README.md"), "the link pattern finds nothing"
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(REPO, os.path.dirname(page), path) if path else os.path.join(REPO, page))
        if not os.path.exists(resolved):
            broken.append(f"{target} (no file {os.path.relpath(resolved, REPO)})")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(f"{target} (no section #{anchor})")
    assert not broken, f"{page}: {broken}"


def test_the_readme_is_a_users_document():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\b[0-9a-f]{7,40}\b", re.sub(r"```.*?```", "", text, flags=re.S)), "a commit hash"
    assert not re.search(r"\d\d:\d\d(-\d\d:\d\d)? UTC", text), "a UTC time"

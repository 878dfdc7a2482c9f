"""Check that every relative link and image in the given Markdown files points at a file that exists.

The docs site's own links are checked by ``mkdocs build --strict``; this covers the files outside it that
GitHub renders (README.md, bench/README.md). A link to a heading of a Markdown file (``page.md#part``) must
name one of its headings, slugged as GitHub and MkDocs both slug plain headings.

    .venv/bin/python scripts/check_links.py README.md bench/README.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"\s+", "-", text)


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def broken_links(path: Path) -> tuple[int, list[str]]:
    """How many relative links ``path`` has, and what is wrong with them."""
    problems = []
    checked = 0
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        checked += 1
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not resolved.exists():
            problems.append(f"{path}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{path}: {target}: no such heading")
    return checked, problems


def main(paths: list[str]) -> int:
    total, problems = 0, []
    for name in paths:
        checked, found = broken_links(Path(name))
        total += checked
        problems += found
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{total} relative links in {', '.join(paths)}: {len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["README.md"]))

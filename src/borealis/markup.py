"""Markdown that people write (incident notes) turned into HTML that is safe to show.

CommonMark with tables and strikethrough, raw HTML off: a ``<script>`` in a note is shown as text.
Links and images keep only http(s) and mailto targets (and relative ones), so a ``javascript:`` link
never reaches the page; links open in a new tab without handing it this page (``noopener``)."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

_SAFE_SCHEMES = ("http:", "https:", "mailto:")


def _validate_link(url: str) -> bool:
    target = url.strip().lower()
    return ":" not in target.split("/", 1)[0] or target.startswith(_SAFE_SCHEMES)


def _link_open(self: Any, tokens: list[Any], index: int, options: Any, env: Any) -> str:
    tokens[index].attrSet("rel", "noopener noreferrer nofollow")
    tokens[index].attrSet("target", "_blank")
    return self.renderToken(tokens, index, options, env)


_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_renderer.validateLink = _validate_link  # type: ignore[method-assign]
_renderer.add_render_rule("link_open", _link_open)


def to_html(text: str) -> Markup:
    """The HTML of a Markdown text; nothing in the text can add markup of its own, which is what makes
    it safe to mark as such."""
    return Markup(_renderer.render(text))  # noqa: S704 - raw HTML is off and link targets are checked

"""Server-rendered pages: the web UI served by the same process as the API."""

from borealis.web.views import install

__all__ = ["install"]

"""MkDocs hook: show the package docstrings' Sphinx roles (:class:`~a.B`) as plain code in the API pages."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r':(?:class|func|meth|mod|attr|data|obj|exc|const):<code>(~?)\.?([\w.]+)</code>')


def _code(match: re.Match[str]) -> str:
    name = match.group(2)
    return f'<code>{name.rsplit(".", 1)[-1] if match.group(1) else name}</code>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace ``:role:<code>~a.b.C</code>`` (a docstring's Sphinx role) by ``<code>C</code>``."""
    return _ROLE.sub(_code, html)

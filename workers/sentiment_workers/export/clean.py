"""Text cleaning for the curated table: mojibake repaired (ftfy), HTML entities unescaped."""

from __future__ import annotations

import html


def clean_text(text: str) -> str:
    """``text`` with mojibake repaired (``ftfy.fix_text``: ``cafÃ©`` -> ``café``), then HTML
    entities unescaped (``&amp;`` -> ``&``, ``&lt;3`` -> ``<3``).

    ftfy runs first with its own HTML handling off: its "auto" mode leaves entities alone in any text that
    contains a ``<``, and tweets often do. The result is deterministic, so re-exports never see a change.
    """
    import ftfy

    return html.unescape(ftfy.fix_text(text, unescape_html=False))

"""Text from datasets and models is data: make it safe to put on a terminal, never markup or escapes."""

from __future__ import annotations

import unicodedata

_PLACEHOLDERS = {"\n": "\n", "\t": "    ", "\x1b": "␛", "\r": "␍", "\x00": "␀", "\x7f": "␡"}


def printable(text: str) -> str:
    """Replace control and format characters (ESC, C1, CR, NUL, bidi overrides…) with visible stand-ins.

    Newlines survive; everything else that a terminal would act on becomes a visible placeholder, so
    no escape sequence from the data can reach the terminal.
    """
    out = []
    for char in text:
        if char in _PLACEHOLDERS:
            out.append(_PLACEHOLDERS[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char != "\u200d":
            out.append(f"\\u{ord(char):04x}" if ord(char) > 0xFF else f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def clip(text: str, limit: int) -> str:
    """Cut for display only (the ledger keeps the whole text)."""
    return text if len(text) <= limit else text[:limit] + "..."

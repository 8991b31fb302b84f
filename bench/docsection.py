"""Rewrite the generated section of a Markdown page, keeping the hand-written part above it."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, section: str, start: str, end: str, title: str) -> None:
    """Replace the part of doc from `start` to `end` with section (which holds both markers);
    append it when there is none, and start a missing page with `title`."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"{title}\n\n"
    first, last = text.find(start), text.find(end)
    if first != -1 and last > first:
        text = text[:first] + section + text[last + len(end) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")

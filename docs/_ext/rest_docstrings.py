"""A griffe extension: the library's reST-flavoured docstrings, rendered as Markdown.

The docstrings in ``src/`` are written for ``help()`` and doctest readers: ``>>>``
examples, ``::`` literal blocks, reST simple tables and Sphinx roles
(``:class:`~mdcollect.X```). mkdocstrings renders Markdown, where those run together
into paragraphs (and ``x["id"]`` reads as a link). Rather than rewrite every
docstring, the API reference converts them when it loads them:

- a run of ``>>>`` / ``...`` lines and their output becomes a ``pycon`` block (without
  ``# doctest:`` flags);
- a paragraph ending in ``::`` ends in ``:``, and the indented block after it becomes
  a ``pycon`` block (doctest), a ``python`` block when it parses as Python, else a
  ``text`` block;
- ``.. deprecated:: V`` (and ``versionadded``, ``versionchanged``, ``note``,
  ``warning``) becomes an admonition;
- a simple table (rows framed by ``=== ===`` lines) becomes a ``text`` block, as
  aligned as it was written;
- a role becomes code, linked (an optional cross-reference: no warning when the
  target is not documented) to the object it names, relative names taken from the
  module or class the docstring belongs to.

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import ast
import html
import re
import textwrap
from typing import Any

import griffe

FENCE = re.compile(r"^\s*(```|~~~)")
ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(?:\(\))?`")
TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")
DOCTEST_FLAG = re.compile(r"\s*# doctest: [+-]\w+.*$")
DIRECTIVE = re.compile(
    r"^(\s*)\.\. (deprecated|versionadded|versionchanged|note|warning)::\s*(.*)$"
)
ADMONITION = {
    "deprecated": ("warning", "Deprecated since {}"),
    "versionadded": ("note", "New in {}"),
    "versionchanged": ("note", "Changed in {}"),
    "note": ("note", "Note"),
    "warning": ("warning", "Warning"),
}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fenced(lines: list[str], lang: str, indent: int) -> list[str]:
    pad = " " * indent
    body = textwrap.dedent("\n".join(lines)).splitlines()
    return [f"{pad}```{lang}", *(pad + line if line else "" for line in body), f"{pad}```"]


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def convert(text: str) -> str:
    """``text`` (a docstring) with its reST blocks as Markdown blocks."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if FENCE.match(line):  # already Markdown: copied through untouched
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            out += lines[i : j + 1]
            i = j + 1
            continue
        if line.lstrip().startswith(">>>"):
            indent, j = _indent(line), i + 1
            while j < len(lines) and lines[j].strip() and _indent(lines[j]) >= indent:
                j += 1
            out += _fenced([DOCTEST_FLAG.sub("", x) for x in lines[i:j]], "pycon", indent)
            i = j
            continue
        directive = DIRECTIVE.match(line)
        if directive:
            pad, name, arg = directive.groups()
            kind, title = ADMONITION[name]
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > len(pad)):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1
            body = textwrap.dedent("\n".join(lines[i + 1 : j])).splitlines()
            if name in ("note", "warning") and arg:
                body.insert(0, arg)
            out.append(f'{pad}!!! {kind} "{title.format(arg)}"')
            out += [f"{pad}    {b}" if b else "" for b in body]
            i = j
            continue
        if TABLE_RULE.match(line):  # to the last rule before a blank line
            indent, j, last = _indent(line), i + 1, i
            while j < len(lines) and lines[j].strip():
                last = j if TABLE_RULE.match(lines[j]) else last
                j += 1
            out += _fenced(lines[i : last + 1], "text", indent)
            i = last + 1
            continue
        if line.rstrip().endswith("::"):
            indent = _indent(line)
            head = line.rstrip()[:-2].rstrip()
            if head.strip():
                out.append(head + ("" if head.endswith(":") else ":"))
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            k = j
            while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > indent):
                k += 1
            while k > j and not lines[k - 1].strip():
                k -= 1
            if k > j:
                block = textwrap.dedent("\n".join(lines[j:k]))
                lang = (
                    "pycon"
                    if block.startswith(">>>")
                    else "python"
                    if _is_python(block)
                    else "text"
                )
                out += ["", *_fenced(lines[j:k], lang, indent)]
                i = k
            else:
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def link_roles(text: str, obj: griffe.Object) -> str:
    """Sphinx roles in ``text`` as code linked to what they name, where it is documented."""
    module = obj.module.path
    owner = obj.path if obj.is_class else obj.parent.path if obj.parent else module
    out: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if in_fence:
            out.append(line)
            continue

        def role(match: re.Match[str]) -> str:
            short, target = match.group(1) == "~", match.group(2)
            title = target.rsplit(".", 1)[-1] if short else target
            if target.startswith("mdcollect"):
                identifier = target
            elif "." not in target and match.group(0).startswith((":meth:", ":attr:")):
                identifier = f"{owner}.{target}"
            else:
                identifier = f"{module}.{target}"
            return (
                f'<autoref identifier="{html.escape(identifier)}" optional>'
                f"<code>{html.escape(title)}</code></autoref>"
            )

        out.append(ROLE.sub(role, line))
    return "\n".join(out)


class RestDocstrings(griffe.Extension):
    """Converts each docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = link_roles(convert(obj.docstring.value), obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.on_object(obj=pkg)  # on_object sees every object but the package itself

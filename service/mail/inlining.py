"""CSS of email templates moved into style attributes once, when a template is compiled.

Many mail clients ignore `<style>`, so every element of an email carries its declarations in a
`style` attribute. Running css-inline over each rendered message costs about 0.2 ms a digest
more than rendering a pre-inlined template (`python -m bench.mail_build`), re-parsing HTML that
is mostly static markup. Here the same inliner runs on that markup
instead, once per template: every start tag of the template source gets the `style` attribute
css-inline gives that element, and `<style>` keeps only the at-rules (`@media`) that cannot be
inlined. Rendering then only fills in the data.

Selectors are matched one element at a time, from its tag name and static attributes, without
its ancestors or siblings: the stylesheet may use type, class and attribute selectors, not
combinators or structural pseudo-classes. tests/mail/test_emails.py compares the result with
inlining each rendered message.
"""

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser
from typing import ClassVar

import css_inline
from jinja2 import Environment
from jinja2.ext import Extension

# Template code stands in the markup as this character while the markup is parsed, so that
# `{{ a > b }}` cannot end a tag early and offsets stay those of the source. It is a private-use
# character, which no template writes.
_MASK = "\ue000"
# Jinja's default delimiters. A string literal containing "%}" or "}}" would confuse this; the
# comparison test would show it.
_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PROBE = "data-paperwire-probe"
# Elements whose content is not markup; a style attribute on them means nothing.
_RAW_TEXT = frozenset({"style", "script"})
_DOCUMENT = frozenset({"html", "head", "body"})
_IN_HEAD = frozenset({"base", "link", "meta", "title", "noscript"})
# html5ever drops a table part outside a table (and an item outside its list), so a probe for
# one is wrapped in what the HTML parser expects around it.
_CONTEXT = {
    "td": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "th": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "tr": ("<table><tbody>", "</tbody></table>"),
    "tbody": ("<table>", "</table>"),
    "thead": ("<table>", "</table>"),
    "tfoot": ("<table>", "</table>"),
    "caption": ("<table>", "</table>"),
    "colgroup": ("<table>", "</table>"),
    "col": ("<table><colgroup>", "</colgroup></table>"),
    "li": ("<ul>", "</ul>"),
    "dt": ("<dl>", "</dl>"),
    "dd": ("<dl>", "</dl>"),
    "option": ("<select>", "</select>"),
    "optgroup": ("<select>", "</select>"),
}

Attributes = tuple[tuple[str, str | None], ...]


class InlineCss(Extension):
    """Inlines the CSS of HTML templates under `email/` as they are compiled.

    The stylesheet of a template is every `<style>` of the templates it extends and its own.
    """

    prefix: ClassVar[str] = "email/"
    suffix: ClassVar[str] = ".html"

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name is None or not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return source
        return inline_template_css(source, _stylesheet(self.environment, source, name))


def inline_template_css(source: str, stylesheet: str) -> str:
    """`source` with a style attribute on each start tag that `stylesheet` styles, and each
    `<style>` cut down to the at-rules; line numbers stay those of `source`."""
    markup = _scan(source)
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    edits: list[tuple[int, int, str]] = []
    styles: dict[tuple[str, Attributes], str | None] = {}
    for tag in markup.tags:
        if tag.name in _RAW_TEXT:
            continue
        key = (tag.name, tag.attributes)
        if key not in styles:
            styles[key] = _probe_style(inliner, stylesheet, tag.name, tag.attributes)
        if style := styles[key]:
            if "{" in style:
                # A brace could open template code once the attribute is in the source.
                raise ValueError(f"cannot inline a style with braces into <{tag.name}>: {style}")
            at = tag.end - (2 if source[tag.start : tag.end].endswith("/>") else 1)
            edits.append((at, at, f' style="{escape(style)}"'))
    for element in markup.style_elements:
        kept = _at_rules(inliner, source[element.content_start : element.content_end])
        start, end = (element.content_start, element.content_end) if kept else element.span
        removed = source.count("\n", start, end) - kept.count("\n")
        # A template comment of the removed line breaks keeps later line numbers right in
        # template errors, and renders as nothing.
        edits.append((start, end, kept + ("{#" + "\n" * removed + "#}" if removed > 0 else "")))
    return _apply(source, edits)


@dataclass(frozen=True)
class _StartTag:
    name: str
    attributes: Attributes  # the static ones, in source order
    start: int
    end: int


@dataclass(frozen=True)
class _StyleElement:
    span: tuple[int, int]
    content_start: int
    content_end: int


@dataclass(frozen=True)
class _Markup:
    tags: Sequence[_StartTag]
    style_elements: Sequence[_StyleElement]


class _Scanner(HTMLParser):
    """Start tags and `<style>` elements of template markup, with their offsets."""

    def __init__(self, masked: str) -> None:
        super().__init__(convert_charrefs=False)
        self.masked = masked
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", masked)]
        self.tags: list[_StartTag] = []
        self.style_elements: list[_StyleElement] = []
        self._open_style: _StartTag | None = None

    def position(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text() or ""
        start = self.position()
        static: list[tuple[str, str | None]] = []
        for name, value in attrs:
            if _MASK in name:
                raise ValueError(f"template code between the attributes of {text!r}")
            if name == "style":
                raise ValueError(f"{text!r}: write its style in the stylesheet")
            if value is not None and _MASK in value:
                if name == "class":
                    raise ValueError(f"{text!r}: a computed class cannot be inlined ahead")
                continue  # computed per message; the stylesheet does not select on it
            static.append((name, value))
        parsed = _StartTag(tag, tuple(static), start, start + len(text))
        self.tags.append(parsed)
        if tag == "style":
            self._open_style = parsed

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style" and self._open_style is not None:
            content_end = self.position()
            close = self.masked.index(">", content_end) + 1
            if _MASK in self.masked[self._open_style.end : content_end]:
                raise ValueError("template code in a <style> cannot be inlined ahead")
            self.style_elements.append(
                _StyleElement(
                    span=(self._open_style.start, close),
                    content_start=self._open_style.end,
                    content_end=content_end,
                )
            )
            self._open_style = None


def _scan(source: str) -> _Markup:
    masked = _TEMPLATE_CODE.sub(lambda code: re.sub("[^\n]", _MASK, code.group()), source)
    scanner = _Scanner(masked)
    scanner.feed(masked)
    scanner.close()
    return _Markup(tags=scanner.tags, style_elements=scanner.style_elements)


def _stylesheet(environment: Environment, source: str, name: str) -> str:
    """The CSS of every `<style>` of `source` and of the templates it extends, in page order."""
    inherited = ""
    if (parent := _parent_name(environment, source, name)) is not None:
        if environment.loader is None:
            raise ValueError(f"{name} extends {parent}, but the environment has no loader")
        parent_source, _, _ = environment.loader.get_source(environment, parent)
        inherited = _stylesheet(environment, parent_source, parent)
    own = "".join(source[s.content_start : s.content_end] for s in _scan(source).style_elements)
    return inherited + own


def _parent_name(environment: Environment, source: str, name: str) -> str | None:
    """The template named by a literal `{% extends "…" %}`, from Jinja's own lexer (parsing
    would run this extension again)."""
    tokens = iter(
        (kind, value)
        for _, kind, value in environment.lexer.tokeniter(source, name)
        if kind != "whitespace"
    )
    for kind, value in tokens:
        if kind == "block_begin" and next(tokens, None) == ("name", "extends"):
            kind, value = next(tokens, ("", ""))
            if kind != "string":
                raise ValueError(f"{name}: only a literal {{% extends %}} can be inlined ahead")
            return str(value)[1:-1]
    return None


def _probe_style(
    inliner: css_inline.CSSInliner, stylesheet: str, tag: str, attributes: Attributes
) -> str | None:
    """The style attribute css-inline gives a `tag` element with `attributes`, alone in a page
    with `stylesheet`."""
    probe = _start_tag(tag, (*attributes, (_PROBE, "")))
    roots = {name: f"<{name}>" for name in _DOCUMENT}
    head = body = ""
    if tag in _DOCUMENT:
        roots[tag] = probe
    else:
        opening, closing = _CONTEXT.get(tag, ("", ""))
        element = f"{opening}{probe}</{tag}>{closing}"
        if tag in _IN_HEAD:
            head = element
        else:
            body = element
    page = (
        f"{roots['html']}{roots['head']}<style>{stylesheet}</style>{head}</head>"
        f"{roots['body']}{body}</body></html>"
    )
    reader = _ProbeReader()
    reader.feed(inliner.inline(page))
    reader.close()
    if not reader.found:
        raise ValueError(f"cannot inline CSS ahead into <{tag}>: no place for it in a page")
    return reader.style


def _start_tag(tag: str, attributes: Attributes) -> str:
    # Built from the template's own static markup, for css-inline to read; never sent.
    written = "".join(
        f" {name}" if value is None else f' {name}="{escape(value)}"' for name, value in attributes
    )
    return f"<{tag}{written}>"


class _ProbeReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found = False
        self.style: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if _PROBE in values:
            self.found = True
            self.style = values.get("style")


def _at_rules(inliner: css_inline.CSSInliner, css: str) -> str:
    """What css-inline leaves of `css` in `<style>`: the rules it cannot inline."""
    reader = _StyleReader()
    reader.feed(inliner.inline(f"<html><head><style>{css}</style></head><body></body></html>"))
    reader.close()
    return "".join(reader.css)


class _StyleReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.css: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.css.append(data)


def _apply(source: str, edits: Sequence[tuple[int, int, str]]) -> str:
    def pieces() -> Iterator[str]:
        done = 0
        for start, end, text in sorted(edits):
            yield source[done:start]
            yield text
            done = end
        yield source[done:]

    return "".join(pieces())

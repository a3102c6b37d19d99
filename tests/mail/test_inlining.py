"""CSS moved into style attributes when an email template is compiled."""

import pytest
from jinja2 import DictLoader, Environment, TemplateSyntaxError

from service.mail.inlining import InlineCss, inline_template_css

CSS = """
body { margin: 0; }
a { color: #1d4ed8; }
.card { padding: 18px; }
td.card { border: 1px solid #e4e4e7; }
.link { text-decoration: none; }
@media only screen and (max-width: 620px) { .card { padding: 12px !important; } }
"""

BASE = f"""<!doctype html>
<html><head><title>{{% block title %}}{{% endblock %}}</title>
<style>{CSS}</style>
</head>
<body>
<table>{{% block rows %}}{{% endblock %}}</table>
</body></html>
"""

PAGE = """{% extends "email/base.html" %}
{% block rows %}
{% for item in items %}
<tr><td class="card">{{ item }}<br/>
<a class="link" href="{{ item }}?a={{ 1 > 0 }}">open</a></td></tr>
{% endfor %}
{% endblock %}
"""


def environment(**templates: str) -> Environment:
    loader = DictLoader({"email/base.html": BASE, "email/page.html": PAGE, **templates})
    return Environment(loader=loader, autoescape=True, extensions=[InlineCss])


def test_start_tags_get_the_styles_of_their_tag_and_classes() -> None:
    html = environment().get_template("email/page.html").render(items=["x", "y"])
    style = "padding: 18px;border: 1px solid #e4e4e7;"
    assert html.count(f'<td class="card" style="{style}">') == 2
    assert '<a class="link" href="y?a=True" style="color: #1d4ed8;text-decoration: none;">' in html
    assert '<body style="margin: 0;">' in html
    assert "<br/>" in html and "<table>" in html  # nothing to add, nothing added


def test_only_the_at_rules_stay_in_style() -> None:
    html = environment().get_template("email/page.html").render(items=[])
    kept = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert kept.startswith("@media only screen and (max-width: 620px)")
    assert ".link" not in kept and "body {" not in kept


def test_a_stylesheet_without_at_rules_leaves_no_style_element() -> None:
    source = "<html><head><style>p { margin: 0; }</style></head><body><p>x</p></body></html>"
    assert inline_template_css(source, "p { margin: 0; }") == (
        '<html><head></head><body><p style="margin: 0;">x</p></body></html>'
    )


def test_line_numbers_stay_those_of_the_source() -> None:
    env = environment()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, "email/base.html")
    inlined = inline_template_css(source, CSS)
    assert inlined.count("\n") == source.count("\n")
    broken = BASE.replace("</table>", "</table>\n{% if %}")
    with pytest.raises(TemplateSyntaxError) as caught:
        environment(**{"email/base.html": broken}).get_template("email/base.html")
    assert caught.value.lineno == BASE[: BASE.index("</table>")].count("\n") + 2


def test_other_templates_are_left_alone() -> None:
    env = environment(**{"web/page.html": BASE})
    html = env.get_template("web/page.html").render()
    assert "body { margin: 0; }" in html and 'style="' not in html


@pytest.mark.parametrize(
    ("markup", "message"),
    [
        ('<p class="{{ kind }}">x</p>', "computed class"),
        ('<p style="color: red">x</p>', "stylesheet"),
        ("<p {% if x %}hidden{% endif %}>x</p>", "template code between the attributes"),
        ("<style>p { color: {{ colour }}; }</style>", "template code in a <style>"),
    ],
)
def test_markup_that_cannot_be_styled_ahead_is_refused(markup: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inline_template_css(f"<html><body>{markup}</body></html>", CSS)

"""The one Jinja environment, for emails (templates/email/), pages (templates/web/) and the
outbox index (templates/outbox/): autoescaped, strict about undefined names."""

from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.mail.inlining import InlineCss
from service.settings import TEMPLATES_DIR


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    """The one Jinja environment for emails and pages, built on first use."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        # Listed explicitly: the default list misses `.html.j2`. Unknown extensions are escaped.
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"),
            disabled_extensions=("txt",),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        # CSS of email templates goes into style attributes once, as they are compiled.
        extensions=[InlineCss],
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code, so skip a stat() per render.
        auto_reload=False,
    )

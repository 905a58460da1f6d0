"""The web console: the fleet in a browser at `/`, from templates and files inside the package
(no build step, nothing fetched from elsewhere). Pages act through the API as the signed-in
person (see `session`), so the console can do nothing the API would refuse them."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from tether.server.console.formats import FILTERS

TEMPLATES = Path(__file__).resolve().parent / "templates"


def templates() -> TemplateConfig[JinjaTemplateEngine]:
    """The console's templates, HTML escaped everywhere."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )
    environment.filters.update(FILTERS)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))

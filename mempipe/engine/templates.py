"""Chat templates rendered without transformers: a client of a server frames prompts
the way the server's tokenizer would (`/props` gives the template), so that it can score
options without loading torch. Templates come from the server, so they run sandboxed."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from typing import Any

from mempipe.errors import ModelError


@cache
def _compiled(template: str) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.filters["tojson"] = lambda x, indent=None: json.dumps(
        x, ensure_ascii=False, indent=indent)
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda f: dt.datetime.now().strftime(f)
    return environment.from_string(template)


def render(template: str, messages: list[dict[str, str]], specials: dict[str, str],
           add_generation_prompt: bool = True) -> str:
    """`messages` framed by `template`, ending where the assistant's reply begins."""
    import jinja2

    try:
        return _compiled(template).render(messages=messages, add_generation_prompt=
                                          add_generation_prompt, **specials)
    except jinja2.TemplateError as error:
        raise ModelError(f"the server's chat template does not render: {error}") from None

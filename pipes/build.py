"""From parsed words to agents: the DSL builds exactly what the Python API builds."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import ValidationError

from mempipe.errors import PipelineSyntaxError
from mempipe.pipes import registry
from mempipe.pipes.pipeline import Agent, Pipeline, SourceAgent
from mempipe.pipes.syntax import RawStage, Word, is_option, tokenize


def parse(text: str) -> Pipeline:
    """The pipeline that `text` describes; a PipelineSyntaxError names stage and position."""
    stages: list[Agent] = []
    for index, raw in enumerate(tokenize(text)):
        stages.extend(_build(raw, index, text))
    return Pipeline(tuple(stages))


def _build(raw: RawStage, index: int, text: str) -> list[Agent]:
    head, *words = raw.words
    where = f"stage {index + 1} ({head.text})"
    try:
        cls = registry.get(head.text)
    except Exception as exc:
        raise PipelineSyntaxError(f"stage {index + 1}: {exc}", text, head.position) from None
    # Keyed by how the DSL spells them: an alias (`from`) where a name would be a keyword.
    fields = {info.alias or name: info for name, info in cls.model_fields.items()}
    values: dict[str, Any] = {}
    positional: list[Word] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.quoted or not is_option(word.text):
            positional.append(word)
            continue
        key, has_value, value = word.text.lstrip("-").partition("=")
        field = key.replace("-", "_")
        if field not in fields:
            known = ", ".join("--" + f.replace("_", "-") for f in fields)
            raise PipelineSyntaxError(f"{where}: unknown option --{key} (options: {known})",
                                      text, word.position)
        if not has_value:
            if _is_flag(fields[field].annotation):
                value = "true"
            elif i < len(words):
                value, i = words[i].text, i + 1
            else:
                raise PipelineSyntaxError(f"{where}: option --{key} needs a value", text,
                                          word.position)
        values[field] = value
    files: list[Word] = []
    names = list(cls.positional)
    for n, word in enumerate(positional):
        if not names:
            files = positional[n:]
            break
        name = names[0]
        if _is_list(fields[name].annotation):
            values.setdefault(name, []).append(word.text)
        else:
            values[name] = word.text
            names.pop(0)
    before: list[Agent] = []
    if files:
        if index > 0 or issubclass(cls, SourceAgent):
            raise PipelineSyntaxError(f"{where}: unexpected argument {files[0].text!r}", text,
                                      files[0].position)
        read = registry.get("read")
        before = [read(paths=[w.text for w in files])]  # `summarize f` means `read f | summarize`
    missing = [n for n in names if fields[n].is_required() and n not in values]
    if missing:
        raise PipelineSyntaxError(f"{where}: missing argument <{missing[0]}>", text,
                                  head.position)
    try:
        return [*before, cls(**values)]
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            name = str(error["loc"][0])
            label = f"<{name}>" if name in cls.positional else f"--{name.replace('_', '-')}"
            message = f"{label}: {message}"
        raise PipelineSyntaxError(f"{where}: {message}", text, head.position) from None


def _is_flag(annotation: Any) -> bool:
    return annotation is bool or (typing.get_origin(annotation) is typing.Union
                                  and bool in typing.get_args(annotation))


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list

"""From parsed words to agents: the DSL builds exactly what the Python API builds."""

from __future__ import annotations

import shlex
import typing
from typing import Any

from pydantic import ValidationError

from mempipe.agents import registry
from mempipe.agents.base import Agent, SourceAgent
from mempipe.errors import PipelineSyntaxError
from mempipe.pipes.pipeline import Pipeline
from mempipe.pipes.syntax import RawStage, Word, tokenize


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
        if word.quoted or not _is_option(word.text):
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
        from mempipe.agents.read import Read

        before = [Read(paths=[w.text for w in files])]  # `summarize f` means `read f | summarize`
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


def _is_option(text: str) -> bool:
    if not text.startswith("-") or text == "-" or text == "--":
        return False
    try:
        float(text)  # a negative number is an argument
        return False
    except ValueError:
        return True


def _is_flag(annotation: Any) -> bool:
    return annotation is bool or (typing.get_origin(annotation) is typing.Union
                                  and bool in typing.get_args(annotation))


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def to_dsl(pipeline: Pipeline) -> str:
    """DSL text that parses back to `pipeline` (defaults left out)."""
    stages = []
    for agent in pipeline.stages:
        words = [agent.name]
        given = agent.model_dump(exclude_defaults=True, by_alias=True)
        for name in agent.positional:
            value = given.pop(name, None)
            values = value if isinstance(value, list) else [] if value is None else [value]
            words += [_quote(str(v)) for v in values]
        for name, value in given.items():
            words.append(f"--{name.replace('_', '-')}={shlex.quote(str(value))}")
        stages.append(" ".join(words))
    return " | ".join(stages)


def _quote(word: str) -> str:
    """Shell-quoted, and quoted even when plain if it would read as an option."""
    quoted = shlex.quote(word)
    return f"'{word}'" if quoted == word and _is_option(word) else quoted

"""Parsing the pipe language into words, stage by stage, keeping character positions.

    pipeline := stage ('|' stage)*
    stage    := NAME arg* option*      shell quoting; option := --key[=value] | --key value

Which words are option values depends on the agent (a flag takes none), so this module
stops at words; `pipes.build` turns them into agents."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from mempipe.errors import PipelineSyntaxError

DOUBLE_QUOTE_ESCAPES = '"\\$`'


@dataclass
class Word:
    text: str
    position: int
    quoted: bool = False  # a quoted word is never an option, whatever it starts with


@dataclass
class RawStage:
    position: int
    words: list[Word] = field(default_factory=list)


def tokenize(text: str) -> list[RawStage]:
    """Split `text` into stages of words, with shell quoting rules and `#` comments."""
    stages = [RawStage(position=0)]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "|":
            if not stages[-1].words:
                raise PipelineSyntaxError("empty stage before '|'", text, i)
            stages.append(RawStage(position=i + 1))
            i += 1
        else:
            word, i = _word(text, i)
            if not stages[-1].words:
                stages[-1].position = word.position
            stages[-1].words.append(word)
    if not stages[-1].words:
        if len(stages) == 1:
            raise PipelineSyntaxError("empty pipeline", text, 0)
        raise PipelineSyntaxError("empty stage after the last '|'", text, n)
    return stages


def _word(text: str, start: int) -> tuple[Word, int]:
    """One shell word starting at `start`; returns it and the index after it."""
    out: list[str] = []
    quoted = False
    i, n = start, len(text)
    while i < n and not text[i].isspace() and text[i] != "|":
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise PipelineSyntaxError("unbalanced single quote", text, i)
            out.append(text[i + 1 : end])
            quoted, i = True, end + 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n and text[j + 1] in DOUBLE_QUOTE_ESCAPES:
                    j += 1
                out.append(text[j])
                j += 1
            if j >= n:
                raise PipelineSyntaxError("unbalanced double quote", text, i)
            quoted, i = True, j + 1
        elif c == "\\":
            if i + 1 >= n:
                raise PipelineSyntaxError("backslash at the end of the pipeline", text, i)
            if text[i + 1] != "\n":  # backslash-newline continues the line
                out.append(text[i + 1])
            quoted, i = True, i + 2
        else:
            out.append(c)
            i += 1
    return Word("".join(out), start, quoted), i


def is_option(text: str) -> bool:
    if not text.startswith("-") or text == "-" or text == "--":
        return False
    try:
        float(text)  # a negative number is an argument
        return False
    except ValueError:
        return True


def quote(word: str) -> str:
    """Shell-quoted, and quoted even when plain if it would read as an option."""
    quoted = shlex.quote(word)
    return f"'{word}'" if quoted == word and is_option(word) else quoted

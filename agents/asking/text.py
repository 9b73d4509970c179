"""Tier 1: the recalled passages read as text. A question that quotes is answered from
the one sentence holding the quotation (and who said it from its attribution, where the
text gives one); any other from the few sentences that bear most on it. Where the answer
is a person, the model chooses among the names its evidence holds; otherwise it writes,
and what it writes must be what the evidence says."""

from __future__ import annotations

import math

import anyio

from mempipe.agents.asking.question import (
    SYSTEM,
    Question,
    Recalled,
    best_of,
    best_windows,
    joined,
)
from mempipe.errors import UsageError
from mempipe.item import Item
from mempipe.memory.embed import default_embedder
from mempipe.memory.query import asks_for_someone, phrases
from mempipe.pipes import reading
from mempipe.pipes.answers import MAX_OPTIONS, attributed, names, unquoted
from mempipe.pipes.cleanup import cut_loop
from mempipe.pipes.context import Context

ABSTAINED = "The text does not say."
EVIDENCE_SENTENCES = 3  # a general question reads the few sentences that bear most on it


async def who_said(question: Question, contexts: list[Item], ctx: Context) -> Item:
    """A question that quotes: its evidence is the one sentence holding the quotation,
    and for a question that asks for someone, the model chooses among its names."""
    ctx.note("answered from text")
    evidence = question.fit(best_windows(question.text, contexts)[:1], ctx)
    shown = " ".join(w.text for w in evidence)
    options = []
    if asks_for_someone(question.text):
        # The quoted sentence first; then the passages around it, where a speaker named
        # before the quotation, or the one "she said" refers to, is found (and cited).
        for cited in [evidence, *([c] for c in contexts)]:
            said = " ".join(w.text for w in cited)
            speaker = next(filter(None, (attributed(said, p) for p in phrases(question.text))),
                           "")
            if speaker:
                ctx.note(f"the text names {speaker!r} as the speaker: decided without the "
                         "model")
                return question.answer(speaker, cited, decided="attribution")
        options = names(unquoted(shown), question.text)[:MAX_OPTIONS]
    if options:
        answer, _ = await best_of(ctx, question.prompt(evidence), options)
        return question.answer(answer, evidence)
    written = cut_loop(await ctx.generate(question.prompt(evidence), system=SYSTEM,
                                          max_tokens=question.max_tokens))
    if not reading.grounded(written, shown, question.text):
        return _abstained(question, evidence, written, ctx)
    return question.answer(written, evidence)


async def read(question: Question, piped: list[Item], recalled: Recalled,
               ctx: Context) -> Item:
    """Any other question: the sentences that bear most on it, in what was piped in and
    the recalled passages, are its evidence (never a heading). For a question that asks
    for someone the model chooses among the names they hold, for a number or a time
    among their spans that hold one; otherwise it writes, loops cut. Where what it wrote
    only echoes the question or says what the evidence does not, it chooses among the best
    sentence's short spans instead, and where it is unsure even of those, abstains."""
    found = await anyio.to_thread.run_sync(_evidence, question, piped, recalled, ctx)
    if not found:
        raise UsageError(f"nothing in {question.from_ or 'the input'} bears on the question")
    ctx.note("answered from text")
    evidence = question.fit(found, ctx)
    shown = " ".join(w.text for w in evidence)
    if reading.kind_of(question.text) == "person":
        options = names(shown, question.text)[:MAX_OPTIONS]
    else:
        options = reading.typed(shown, question.text)[:reading.MAX_SPANS]
    if options:
        chosen, _ = await best_of(ctx, question.prompt(evidence), options)
        return question.answer(chosen, evidence, options=len(options))
    written = cut_loop(await ctx.generate(question.prompt(evidence), system=SYSTEM,
                                          max_tokens=question.max_tokens))
    if reading.grounded(written, shown, question.text):
        return question.answer(written, evidence)
    # What it wrote is not what the evidence says: it chooses among the best
    # sentence's own short spans instead, if it is sure enough of one.
    best = evidence[:1]
    options = reading.spans(best[0].text, question.text)[:reading.MAX_SPANS]
    chosen, score = await best_of(ctx, question.prompt(best), options) if options \
        else ("", -math.inf)
    sureness = math.exp(score)
    if sureness < reading.SURE:
        return _abstained(question, evidence, written, ctx)
    ctx.note(f"chose {chosen!r} ({sureness:.2f}): {written!r} is not what the evidence says")
    return question.answer(chosen, best, options=len(options), confidence=round(sureness, 3))


def _evidence(question: Question, piped: list[Item], recalled: Recalled,
              ctx: Context) -> list[Item]:
    known = {}
    for store, group in recalled:
        known |= store.sentence_vectors(group)
    return reading.evidence(question.text, piped + [joined(group) for _, group in recalled],
                            default_embedder(), EVIDENCE_SENTENCES, known=known)


def _abstained(question: Question, evidence: list[Item], written: str, ctx: Context) -> Item:
    """The abstention given where what the model wrote is not what the evidence says."""
    ctx.note(f"{written!r} is not what the evidence says, so abstained")
    return question.answer(ABSTAINED, evidence, abstained=True, written=written)

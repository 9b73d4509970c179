"""Tier 2 on the tiny random model: a stored memory reads like its text, compression
keeps what its setting says, memories batch, and bad or foreign blobs are never read."""

from __future__ import annotations

import anyio
import pytest
import torch

from mempipe import Memory, ask, read, remember
from mempipe.agents.asking.question import Question
from mempipe.engine import GenerationRequest
from mempipe.engine.base import Message
from mempipe.errors import StageError, UsageError
from mempipe.memory import Store, kv
from mempipe.pipes.trace import Trace

PASSAGE = ("Alice was beginning to get very tired of sitting by her sister on the bank, "
           "and of having nothing to do.")
OTHER = "The Queen had only one way of settling all difficulties: off with his head."
OPTIONS = ["Alice", "the Queen", "her sister"]


def as_text(question: str, *passages: str) -> list:
    """The framing with the passages written where their memories would go."""
    return kv.framing_as_text(question, "".join(passages))


def memories(engine, *passages: str, setting: str = "fp16-128of128-all") -> list:
    states = engine.read_passages(kv.framing(), list(passages))
    chosen = kv.Compression.parse(setting)
    return [kv.load(kv.compress(s, chosen, engine.fingerprint), engine.fingerprint)
            for s in states]


def test_a_whole_memory_reads_exactly_like_its_text(engine) -> None:
    head, tail = engine._split(kv.framing("Who was tired?"))
    assert head + engine._ids(PASSAGE) + tail == engine.prompt_ids(
        as_text("Who was tired?", PASSAGE))  # the same tokens, so the same reading
    [memory] = memories(engine, PASSAGE)
    injected = engine.score(kv.framing("Who was tired?"), OPTIONS, [memory])
    read_as_text = engine.score(as_text("Who was tired?", PASSAGE), OPTIONS)
    assert injected == pytest.approx(read_as_text, abs=1e-3)
    assert injected != pytest.approx(engine.score(as_text("Who was tired?"), OPTIONS), abs=1e-3)


def test_generation_with_a_memory_writes_what_the_text_writes(engine) -> None:
    [memory] = memories(engine, PASSAGE)

    async def both() -> tuple[str, str]:
        with_memory = await engine.generate(GenerationRequest(
            messages=kv.framing("Who?"), memories=[memory], max_tokens=12))
        with_text = await engine.generate(GenerationRequest(
            messages=as_text("Who?", PASSAGE), max_tokens=12))
        return with_memory.text, with_text.text

    injected, read_as_text = anyio.run(both)
    assert injected == read_as_text


def test_requests_with_different_memories_batch_and_each_reads_its_own(engine) -> None:
    first, second = memories(engine, PASSAGE), memories(engine, OTHER)
    requests = [GenerationRequest(messages=kv.framing("Who?"), memories=first, max_tokens=8),
                GenerationRequest(messages=kv.framing("Who?"), memories=second, max_tokens=8),
                GenerationRequest(messages=as_text("Who?", OTHER), max_tokens=8)]

    async def alone() -> list[str]:
        return [(await engine.generate(r)).text for r in requests]

    async def together() -> list[str]:
        out: list[str] = [""] * len(requests)

        async def one(i: int) -> None:
            out[i] = (await engine.generate(requests[i])).text

        async with anyio.create_task_group() as tg:
            for i in range(len(requests)):
                tg.start_soon(one, i)
        return out

    assert anyio.run(together) == anyio.run(alone)
    assert engine.batcher.steps > 0


def test_compression_keeps_the_tokens_layers_and_precision_it_names(engine) -> None:
    [state] = engine.read_passages(kv.framing(), [PASSAGE])
    tokens = state.keys.shape[2]
    sizes, errors = {}, {}
    for name in ("fp16-128of128-all", "int8-128of128-all", "int4-128of128-all"):
        blob = kv.compress(state, kv.Compression.parse(name), engine.fingerprint)
        memory = kv.load(blob, engine.fingerprint)
        sizes[name] = len(blob)
        errors[name] = float((torch.stack(memory.keys) - state.keys.float()).abs().max())
    assert sizes["fp16-128of128-all"] > sizes["int8-128of128-all"] > sizes["int4-128of128-all"]
    assert errors["fp16-128of128-all"] < errors["int8-128of128-all"] < errors[
        "int4-128of128-all"] < 0.2 * float(state.keys.abs().max())

    sparse = kv.load(kv.compress(state, kv.Compression.parse("int8-16of128-half"),
                                 engine.fingerprint), engine.fingerprint)
    kept = -(-tokens * 16 // 128)
    assert sparse.layers == 1 and sparse.keys[0].shape == (2, kept, 16)  # tiny: 2 layers
    assert sparse.tokens == tokens
    for head in sparse.positions[0]:  # the tokens that received the most attention
        assert head.tolist() == sorted(set(head.tolist())) and int(head.max()) < tokens
    scores = engine.score(kv.framing("Who?"), OPTIONS, [sparse])
    assert all(s == s and s < 0 for s in scores)


def test_upper_layers_do_not_see_memories_kept_by_the_lower_half(engine) -> None:
    """With half the layers, the second layer attends to the framing and question only:
    whatever stands in the memory's slots there cannot change the scores."""
    [state] = engine.read_passages(kv.framing(), [PASSAGE])
    half = kv.load(kv.compress(state, kv.Compression.parse("fp16-128of128-half"),
                               engine.fingerprint), engine.fingerprint)
    from mempipe.engine import memories as engine_memories

    real = engine_memories.build_prefix
    try:
        def noisy(runner, head, chosen):
            prefix = real(runner, head, chosen)
            for k in prefix.keys[prefix.layers:]:
                k[:, prefix.head:] = torch.randn_like(k[:, prefix.head:]) * 10
            return prefix

        engine_memories.build_prefix = noisy
        with_noise = engine.score(kv.framing("Who?"), OPTIONS, [half])
    finally:
        engine_memories.build_prefix = real
    assert with_noise == pytest.approx(engine.score(kv.framing("Who?"), OPTIONS, [half]))


def test_bad_settings_and_foreign_blobs_are_refused(engine) -> None:
    with pytest.raises(UsageError, match="bad KV setting 'int3-8of128-all'"):
        kv.Compression.parse("int3-8of128-all")
    [state] = engine.read_passages(kv.framing(), [PASSAGE])
    blob = kv.compress(state, kv.DEFAULT, engine.fingerprint)
    with pytest.raises(UsageError, match="computed by other weights"):
        kv.load(blob, "0123456789abcdef")
    with pytest.raises(Exception, match="exactly once"):
        engine.score(as_text("Who?", PASSAGE), OPTIONS, memories(engine, PASSAGE))


# -- the store ---------------------------------------------------------------------------

@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(" ".join([PASSAGE, OTHER] * 20))
    return path


def test_memories_are_stored_counted_and_deleted_with_their_namespace(book, engine) -> None:
    (read(str(book)) | remember("books", tier="kv", kv="int4-32of128-all")).run(engine=engine)
    store = Store()
    passages = store.passages("books")
    blobs, corrupt = store.kv([p.id for p in passages])
    assert len(blobs) == len(passages) and not corrupt
    [stats] = store.stats("books")
    assert stats["kv_passages"] == len(passages) and stats["kv_settings"] == "int4-32of128-all"
    assert 0 < stats["text_bytes_per_token"] < stats["kv_bytes_per_token"]
    # the same namespace again: nothing to compute
    assert Memory("books").encode_kv(engine, "int4-32of128-all") == 0
    store.forget("books")
    assert store.db.execute("select count(*) from kv").fetchone()[0] == 0


def test_a_failed_write_stores_no_memory_at_all(book, engine, monkeypatch) -> None:
    Memory("books").remember(book.read_text())
    store = Store()
    real, calls = store.db.execute, []

    def failing(sql, *args):
        if sql.startswith("insert or replace into kv"):
            calls.append(sql)
            if len(calls) == 2:
                raise OSError("No space left on device")
        return real(sql, *args)

    monkeypatch.setattr(store.db, "execute", failing)
    with pytest.raises(OSError):
        Memory("books", store).encode_kv(engine)
    monkeypatch.undo()
    assert store.db.execute("select count(*) from kv").fetchone()[0] == 0
    assert Memory("books", store).encode_kv(engine) == len(store.passages("books"))


def test_ask_reads_memories_and_falls_back_to_text_for_a_corrupt_one(book, engine,
                                                                       capsys) -> None:
    (read(str(book)) | remember("books", tier="kv")).run(engine=engine)
    question = 'Who said "off with his head"?'
    [answer] = ask(question, from_="books", tier="kv").pipeline().items(engine=engine)
    assert answer.meta["tier"] == "kv" and answer.text in ("Queen", "The Queen")
    store = Store()
    store.db.execute("update kv set blob = cast(substr(blob, 1, length(blob) - 1) || 'x' "
                     "as blob)")
    [answer] = ask(question, from_="books", tier="kv").pipeline().items(engine=engine)
    assert "fail their checksum" in capsys.readouterr().err


def test_a_reply_begun_is_continued(engine) -> None:
    messages = kv.framing("Who?")
    begun = [*messages, Message(role="assistant", content="The Queen")]
    assert engine.prompt_ids(begun) == engine.prompt_ids(messages) + engine._ids("The Queen")


def test_ask_reretrieve_recalls_again_as_it_writes(book, engine, monkeypatch) -> None:
    (read(str(book)) | remember("books", tier="kv")).run(engine=engine)
    queries = []
    recall = Question.recall
    monkeypatch.setattr(Question, "recall", lambda self, ctx, query=None: (
        queries.append(query), recall(self, ctx, query))[1])
    trace = Trace()
    [answer] = ask("What did the Queen do?", from_="books", tier="kv", reretrieve=4,
                   max_tokens=12).pipeline().items(engine=engine, trace=trace)
    written = [c for c in trace.calls if c.tokens_out]
    assert len(written) == 3 and sum(c.tokens_out for c in written) == 12
    assert answer.text == "".join(c.output for c in written)
    assert queries[0] is None  # the question alone, then with the answer so far
    assert queries[1:] == [f"What did the Queen do? {written[0].output}",
                           f"What did the Queen do? {written[0].output}{written[1].output}"]
    with pytest.raises(StageError, match="use it with --tier kv"):
        ask("Who?", from_="books", reretrieve=4).pipeline().run(engine=engine)


def test_ask_tier_kv_needs_a_namespace_with_memories(book, engine) -> None:
    Memory("plain").remember(book.read_text())
    with pytest.raises(StageError, match="holds no key/value memories"):
        ask("Who said it?", from_="plain", tier="kv").pipeline().run(engine=engine)
    with pytest.raises(StageError, match="name it with --from"):
        (read(str(book)) | ask("Who said it?", tier="kv")).run(engine=engine)


def test_dsl_builds_kv_tiers() -> None:
    from mempipe import pipe

    assert str(pipe("read b.txt | remember --into books --tier kv --kv int8-32of128-all")) == (
        "read b.txt | remember --into=books --tier=kv --kv=int8-32of128-all")
    with pytest.raises(Exception, match="bad KV setting"):
        pipe("read b.txt | remember --into books --tier kv --kv int9")

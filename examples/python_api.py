"""The Python API: the same pipelines as the DSL, built with `|`.

    .venv/bin/python examples/python_api.py
"""

from pathlib import Path

import anyio

from mempipe import Item, agent, ask, chunk, pipe, read, summarize

BOOK = str(Path(__file__).parent / "data" / "alice_in_wonderland.txt")


@agent(budget=512)
async def first_sentence(item: Item) -> str:
    """Keep each piece's first sentence: a custom agent, usable in the DSL by name."""
    return item.text.split(". ")[0].strip() + "."


def main() -> None:
    # A DSL string and its Python spelling are the same pipeline.
    opening = read(BOOK) | chunk(tokens=200) | first_sentence()
    assert pipe(f"read {BOOK} | chunk --tokens 200 | first-sentence") == opening
    print("first sentences of the first pieces:")
    for item in opening.items()[:3]:
        print(f"  {item.span}: {item.text}")

    # Streaming, asynchronously: items arrive as the last stage produces them.
    async def stream() -> None:
        passage = ("The Hatter opened his eyes very wide on hearing this; but all he said "
                   "was, 'Why is a raven like a writing-desk?'")
        async for item in ask("Who asked why a raven is like a writing-desk?").pipeline() \
                .stream(passage):
            print("answer:", item.text)

    anyio.run(stream)

    # The whole book, map-reduced within a 2,048-token context: a few minutes on a CPU.
    print("summary:", (read(BOOK) | summarize(words=100)).run())


if __name__ == "__main__":
    main()

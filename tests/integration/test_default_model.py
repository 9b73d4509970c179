"""End to end on the real default model (SmolLM2-135M-Instruct, CPU): slow, and real."""

import json
import subprocess
from pathlib import Path

import pytest

from mempipe import Item, Memory, ask, read, summarize
from mempipe.agents.commit_msg import CONVENTIONAL
from mempipe.engine import get_engine
from mempipe.pipes.answers import names
from tests.conftest import ALICE, mempipe

pytestmark = pytest.mark.integration
QA = ALICE.parent / "qa" / "alice_in_wonderland.whosaid.jsonl"

CHARACTERS = ["Rabbit", "Queen", "King", "Hatter", "Cat", "Duchess", "Caterpillar", "Turtle",
              "Gryphon", "Dormouse", "Hare", "Knave", "Mouse", "Dodo", "Pigeon", "Lory", "Bill",
              "Sister", "Dinah", "Cook"]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the module, so the default model is converted once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEMPIPE_HOME", str(shared_home))
    monkeypatch.delenv("MEMPIPE_MODEL", raising=False)
    return shared_home


@pytest.fixture(scope="module")
def alice_summary(shared_home: Path) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMPIPE_HOME", str(shared_home))
        return (read(str(ALICE)) | summarize()).run(engine=get_engine())


def test_summary_of_alice_names_alice_and_three_others(alice_summary: str) -> None:
    named = [name for name in CHARACTERS if name.lower() in alice_summary.lower()]
    assert "alice" in alice_summary.lower(), alice_summary
    assert len(named) >= 3, (named, alice_summary)
    assert len(alice_summary.split()) <= 150


def test_summary_of_alice_invents_no_name(alice_summary: str) -> None:
    from mempipe.memory.query import words

    book = set(words(ALICE.read_text()))
    invented = [n for n in names(alice_summary, "") if not set(words(n)) <= book]
    assert not invented, (invented, alice_summary)


def test_ask_about_the_summary(alice_summary: str) -> None:
    # Which character the 135M model picks depends on how the summary came out; what ask
    # promises is a name its evidence (the summary, read whole) holds.
    answer = ask("Who is the story about?").run(alice_summary, engine=get_engine())
    assert answer in names(alice_summary, "Who is the story about?"), answer


GENERAL = ALICE.parent / "qa" / "alice_in_wonderland.general.jsonl"


def test_general_questions_of_every_kind_are_answered_from_evidence_or_abstained(
        home: Path) -> None:
    """One question of each kind from the general set: each answer is grounded in the
    sentences it cites (never a heading, never a loop) or an abstention the caller can
    see, and some are right (bench/general.py measures the whole set: about a quarter of
    Alice's questions are answered right, docs/benchmarks.md)."""
    from bench.general import correct
    from mempipe.pipes.cleanup import cut_loop
    from mempipe.pipes.reading import grounded, is_structure

    text = ALICE.read_text()
    Memory("alice-general").remember(Item(text=text, source=str(ALICE), span=(0, len(text))))
    questions = [json.loads(line) for line in GENERAL.read_text().splitlines()]
    one_of_each = list({q["kind"]: q for q in questions}.values())
    headings = {" ".join(line.split()) for line in text.splitlines()
                if line.strip() and is_structure(line)}
    assert len(one_of_each) == 8
    right = 0
    for q in one_of_each:
        [item] = ask(q["question"], from_="alice-general").pipeline().items(engine=get_engine())
        shown = " ".join(text[s["span"][0]:s["span"][1]] for s in item.meta["sources"])
        assert all(s["source"] == str(ALICE) for s in item.meta["sources"])
        if not item.meta.get("abstained"):
            assert item.text in shown or grounded(item.text, shown, q["question"]), item
            assert " ".join(item.text.split()) not in headings, item
            assert cut_loop(item.text) == item.text.strip(), item
        right += correct(item.text, q["answers"])
    assert right >= 1, right


def test_cli_answers_from_stdin_with_the_default_model(home: Path) -> None:
    passage = ("The Hatter opened his eyes very wide on hearing this; but all he said was, "
               "'Why is a raven like a writing-desk?'")
    result = mempipe("--json", "ask 'Who asked why a raven is like a writing-desk?'",
                     input=passage)
    assert result.returncode == 0, result.stderr
    assert "hatter" in result.stdout.lower(), result.stdout
    models = mempipe("models")
    assert models.stdout.startswith("* smollm2-135m-instruct") and "cached" in models.stdout


def test_commit_msg_for_a_real_diff(home: Path, tmp_path: Path) -> None:
    from tests.conftest import sh

    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    (repo / "shop.py").write_text("def total(prices):\n    return sum(prices)\n")
    sh(repo, "git", "add", ".")
    (repo / "shop.py").write_text("def total(prices, tax=0.0):\n"
                                  "    return sum(prices) * (1 + tax)\n\n\n"
                                  "def cheapest(prices):\n    return min(prices)\n")
    sh(repo, "git", "add", ".")
    diff = subprocess.run(["git", "diff", "--staged"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout
    result = mempipe("commit-msg", input=diff)
    assert result.returncode == 0, result.stderr
    subject = result.stdout.splitlines()[0]
    assert CONVENTIONAL.match(subject) and len(subject) <= 72, subject
    assert "shop.py" in result.stdout and "cheapest()" in result.stdout


def test_cli_remembers_a_book_and_answers_with_a_cited_span(home: Path) -> None:
    stored = mempipe(f"read {ALICE} | remember --into alice")
    assert stored.returncode == 0, stored.stderr
    result = mempipe("--json", "ask 'Who said \"Off with her head\"?' --from alice")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "queen" in answer["text"].lower(), answer
    [cited] = answer["meta"]["sources"]
    start, end = cited["span"]
    assert cited["source"] == str(ALICE)
    assert "off with her head" in ALICE.read_text()[start:end].lower()


def test_who_said_accuracy_on_alice_from_text_memory(home: Path) -> None:
    """The whole who-said set for Alice, as bench/whosaid.py asks it (measured 93%)."""
    from bench.whosaid import correct

    text = ALICE.read_text()
    Memory("alice-qa").remember(Item(text=text, source=str(ALICE), span=(0, len(text))))
    questions = [json.loads(line) for line in QA.read_text().splitlines()]
    right = [correct(ask(q["question"], from_="alice-qa").run(engine=get_engine()),
                     q["answer"]) for q in questions]
    assert sum(right) / len(right) >= 0.8, sum(right)


def test_cli_reads_an_input_longer_than_the_model_in_one_pass(home: Path) -> None:
    """--stream-context: 10,000+ tokens of Alice, past the model's 8,192 positions, with a
    pass key near the end; Λ-shaped attention reads it all, no memory involved."""
    text = ALICE.read_text()[:40_000] + "\n\nThe pass key is 71432. Remember it.\n\n"
    text += ALICE.read_text()[40_000:42_000]
    result = mempipe("--json", "ask 'What is the pass key?' --stream-context", input=text,
                     timeout=900)  # minutes on a 2-core CPU without bf16 (fp32)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "71432" in answer["text"], answer["text"]
    assert answer["meta"]["sources"] == [{"source": "-", "span": [0, len(text)]}]


def test_cli_answers_from_key_value_memories(home: Path) -> None:
    """Tier 2 end to end: remember with --tier kv, then ask reading the stored keys and
    values (no prefill of the passages)."""
    stored = mempipe(f"read {ALICE} | remember --into alice-kv --tier kv", timeout=900)
    assert stored.returncode == 0, stored.stderr
    [stats] = [json.loads(line) for line in
               mempipe("memory", "stats", "alice-kv", "--json").stdout.splitlines()]
    assert stats["kv_passages"] == stats["passages"] > 300, stats
    result = mempipe("--json", "ask 'Who said \"Off with her head\"?' --from alice-kv --tier kv")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "queen" in answer["text"].lower() and answer["meta"]["tier"] == "kv", answer


def test_who_said_accuracy_on_alice_from_key_value_memories(home: Path) -> None:
    """The Alice who-said set read from stored memories (bench/kv_memory.py measures it
    beside text)."""
    from bench.whosaid import correct

    text = ALICE.read_text()
    memory = Memory("alice-kv-qa")
    memory.remember(Item(text=text, source=str(ALICE), span=(0, len(text))))
    assert memory.encode_kv() == len(memory.passages())
    questions = [json.loads(line) for line in QA.read_text().splitlines()]
    right = [correct(ask(q["question"], from_="alice-kv-qa", tier="kv").run(
        engine=get_engine()), q["answer"]) for q in questions]
    assert sum(right) / len(right) >= 0.8, sum(right)


def test_cli_trains_a_memory_reader_that_ask_then_reads_with(home: Path, tmp_path: Path) -> None:
    """The memory reader end to end, small: train-reader on a slice of another book learns
    (its loss falls), and ask --tier kv reads memories with it. bench/kv_memory.py measures
    a full reader against text."""
    from mempipe.memory import reader

    book = tmp_path / "pride.txt"
    book.write_text((ALICE.parent / "pride_and_prejudice.txt").read_text()[:30_000])
    assert mempipe(f"read {book} | remember --into pride-kv --tier kv").returncode == 0
    trained = mempipe("memory", "train-reader", "pride-kv", "--questions", "12", "--rank", "4",
                      "--measure", "8", timeout=900)  # minutes on a slow or busy 2-core CPU
    assert trained.returncode == 0, trained.stderr
    [stats] = [json.loads(line) for line in
               mempipe("memory", "stats", "pride-kv", "--json").stdout.splitlines()]
    assert 1 <= stats["reader_measured"] <= 8, stats  # held-back facts, memories vs text
    assert f"measured on {stats['reader_measured']} held-back questions" in trained.stderr
    first, last = map(float, trained.stderr.split("loss by epoch ")[1].split(")")[0]
                      .split(" -> "))
    assert last < first, trained.stderr
    path = reader.path_for(get_engine().fingerprint)
    try:
        assert reader.load(get_engine()).about["trained_on"] == "pride-kv"
        result = mempipe("ask 'Who said \"I hope Mr. Bingley will like it\"?' --from pride-kv "
                         "--tier kv")
        assert result.returncode == 0 and result.stdout.strip(), result.stderr
        assert "no memory reader" not in result.stderr
    finally:
        path.unlink(missing_ok=True)  # the other tests read memories without it


def test_place_trains_the_adapter_on_what_was_asked_and_auto_answers_from_it(
        home: Path, tmp_path: Path) -> None:
    """Tier 3 end to end, small: questions asked of a slice of a book make their passages
    hot, memory place trains the adapter on their facts first, ask --tier params answers
    most of the who-said facts it learned with nothing recalled, and ask (auto) says in
    its trace which tier answered."""
    from mempipe.memory import taught

    book = tmp_path / "alice.txt"
    book.write_text(ALICE.read_text()[:30_000])
    assert mempipe(f"read {book} | remember --into alice-params").returncode == 0
    gold = [json.loads(line) for line in QA.read_text().splitlines()]
    asked = [q for q in gold if q["offset"] < 30_000]
    for q in asked:  # curly apostrophes only: each goes in single quotes as it is
        assert mempipe(f"ask '{q['question']}' --from alice-params --tier text").returncode == 0
    planned = mempipe("memory", "place", "alice-params", "--dry-run")
    assert "adapter: train on" in planned.stdout, planned.stderr
    placed = mempipe("memory", "place", "alice-params", "--kv-budget", "0", "--questions",
                     "16", "--epochs", "4", timeout=900)  # training, as above
    assert placed.returncode == 0, placed.stderr
    kept = taught.path_for("alice-params", get_engine().fingerprint)
    facts = [json.loads(line) for line in kept.read_text().splitlines()[1:]]
    learned = {f["question"] for f in facts}
    assert sum(q["question"] in learned for q in asked) >= len(asked) - 1  # hot ones first
    who = [f for f in facts if f["question"].startswith("Who said") and f["answer"]]
    assert len(who) >= 4, facts
    answers = [ask(f["question"], from_="alice-params", tier="params").run(engine=get_engine())
               for f in who]
    right = [f["answer"].lower() in a.lower() for f, a in zip(who, answers)]
    assert sum(right) >= len(who) / 2, list(zip(who, answers))
    plain = next(f["question"] for f in who if "'" not in f["question"])
    traced = mempipe("--trace", f"ask '{plain}' --from alice-params")
    assert traced.returncode == 0 and "; answered from " in traced.stderr, traced.stderr
    stats = json.loads(mempipe("memory", "stats", "alice-params", "--json").stdout)
    assert stats["adapters"] == 1 and stats["adapter_facts"] >= 16  # and who-is facts
    assert not stats["adapter_stale"]


def test_int8_decoding_writes_what_the_exact_engine_writes_at_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMPIPE_QUANTIZE=int8 on the default model: the first dozen tokens of a greedy
    answer are the exact engine's (bench/throughput.py's agreement: int8 parts from it
    about as soon as float32 does, not at once as a broken copy would)."""
    import anyio

    from mempipe.engine import GenerationRequest, Message
    from mempipe.engine.local import LocalEngine
    from mempipe.engine.models import DEFAULT_MODEL

    request = GenerationRequest(messages=[Message(role="user", content="Tell me about the "
                                                  "Queen of Hearts.")], max_tokens=12)
    exact = anyio.run(LocalEngine(DEFAULT_MODEL).generate, request)
    monkeypatch.setenv("MEMPIPE_QUANTIZE", "int8")
    quick = LocalEngine(DEFAULT_MODEL)
    assert quick.batcher.runner.head_int8 is not None
    assert anyio.run(quick.generate, request).text == exact.text


def test_cli_through_mempipe_serve_answers_as_in_process(home: Path) -> None:
    """The default model served by `mempipe serve`; the CLI pointed at it with --model URL
    gives the answers the same CLI gives in process: a who-said question (the model
    chooses among names: scoring over HTTP) and a general one (it writes)."""
    from bench.serve import Served

    stored = mempipe(f"read {ALICE} | remember --into alice")
    assert stored.returncode == 0, stored.stderr
    served = Served()
    try:
        for question in ["Who said \"Off with her head\"?", "Where did Alice fall?"]:
            pipeline = f"ask {json.dumps(question)} --from alice --tier text"
            here = mempipe("--json", pipeline)
            there = mempipe("--model", served.url, "--json", pipeline)
            assert there.returncode == 0, there.stderr
            assert json.loads(there.stdout) == json.loads(here.stdout)
    finally:
        served.kill()


def test_cli_through_llama_cpp_server(home: Path) -> None:
    """The same pipeline through llama.cpp's OpenAI-compatible server (llama-cpp-python's,
    the `llamacpp` extra) on the default GGUF: it counts tokens and gives log-probabilities
    one prompt at a time, and MEMPIPE_TOKENIZER gives the chat template it does not."""
    pytest.importorskip("llama_cpp.server")
    import sys

    from bench.serve import Served
    from mempipe.engine.models import default_gguf

    stored = mempipe(f"read {ALICE} | remember --into alice")
    assert stored.returncode == 0, stored.stderr
    served = Served(command=[sys.executable, "-m", "llama_cpp.server", "--model",
                             str(default_gguf()), "--n_ctx", "8192", "--logits_all", "true"],
                    probe="/v1/models")
    try:
        result = mempipe("--model", served.url, "--json", "--trace",
                         "ask 'Who said \"Off with her head\"?' --from alice",
                         env={"MEMPIPE_TOKENIZER": "smollm2-135m-instruct"})
        assert result.returncode == 0, result.stderr
        assert "queen" in json.loads(result.stdout)["text"].lower()
        assert "wrote instead of choosing" not in result.stderr  # it chose, by scoring
    finally:
        served.kill()


"""`mempipe memory ...` and the memory agents through the CLI, as a shell runs them: exit
codes, one-line errors, stdout only for data."""

import json

import pytest

from tests.conftest import mempipe

NOTES = "The spare key is under the blue flowerpot. The car is parked on Elm Street."


@pytest.mark.slow
def test_remember_search_export_import_forget(tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(NOTES)
    stored = mempipe(f"read {notes} | remember --into notes")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == NOTES  # a sink that passes items on
    listed = mempipe("memory", "list")
    assert listed.stdout.startswith("notes") and "1 documents" in listed.stdout
    found = mempipe("memory", "search", "notes", "where is the key", "--json")
    assert json.loads(found.stdout.splitlines()[0])["text"].startswith("The spare key")
    recalled = mempipe("--json", "recall 'blue flowerpot' --from notes -k 1")
    item = json.loads(recalled.stdout)
    assert item["source"] == str(notes) and NOTES[slice(*item["span"])] == item["text"]
    stats = json.loads(mempipe("memory", "stats", "notes", "--json").stdout)
    assert stats["passages"] >= 1 and stats["recalls"] >= 2
    exported = mempipe("memory", "export", "notes").stdout
    imported = mempipe("memory", "import", "copy", input=exported)
    assert imported.returncode == 0 and "imported" in imported.stderr
    assert mempipe("memory", "export", "copy").stdout == exported
    forgot = mempipe("memory", "forget", "notes")
    assert forgot.returncode == 0 and forgot.stdout == ""
    assert mempipe("memory", "list").stdout.startswith("copy")


def test_bad_input_is_one_line_and_exit_2() -> None:
    cases = [
        (("memory", "forget", "nowhere"), None, "mempipe: no such namespace: nowhere"),
        (("memory", "show", "nowhere"), None, "mempipe: no such namespace: nowhere"),
        (("memory", "import", "x"), '{"text": "no source"}\n',
         "mempipe: import: line 1: Field required (source)"),
        (("memory", "import", "bad name"), "", "mempipe: bad namespace name 'bad name'"),
        (("recall x --from nowhere",), None, "mempipe: stage 1 (recall): no such namespace"),
        (("ask 'Who?' --from nowhere",), None, "mempipe: stage 1 (ask): no such namespace"),
    ]
    for args, stdin, message in cases:
        result = mempipe(*args, input=stdin)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert mempipe("memory", "list").stdout == ""  # the failed import stored nothing

from pathlib import Path

import pytest

from mempipe import read
from mempipe.errors import StageError


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def test_files_globs_and_directories(tmp_path: Path, engine) -> None:
    write(tmp_path / "a.txt", "alpha")
    write(tmp_path / "docs" / "b.md", "beta")
    write(tmp_path / "docs" / "deep" / "c.md", "gamma")
    write(tmp_path / "docs" / "logo.png", b"\x89PNG\0\0binary")
    write(tmp_path / "docs" / ".hidden" / "d.md", "hidden")
    items = read(str(tmp_path / "a.txt"), str(tmp_path / "docs")).pipeline().items(engine=engine)
    assert [(Path(i.source).name, i.text, i.span) for i in items] == [
        ("a.txt", "alpha", (0, 5)), ("b.md", "beta", (0, 4)), ("c.md", "gamma", (0, 5))]
    globbed = read(str(tmp_path / "**" / "*.md")).pipeline().items(engine=engine)
    assert [i.text for i in globbed] == ["beta", "gamma"]


def test_undecodable_bytes_are_replaced_with_a_warning(tmp_path: Path, engine, capsys) -> None:
    path = write(tmp_path / "latin1.txt", "caf\xe9 ok".encode("latin-1"))
    [item] = read(str(path)).pipeline().items(engine=engine)
    assert item.text == "caf\ufffd ok"
    assert "1 undecodable bytes replaced" in capsys.readouterr().err


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: d / "missing.txt", "no such file: "),
    (lambda d: write(d / "x.bin", b"ELF\0\0\0"), "binary file: "),
    (lambda d: write(d / "empty.txt", "  \n"), "empty input: "),
    (lambda d: write(d / "only" / "x.bin", b"\0") and d / "only", "no text files in directory"),
    (lambda d: d / "*.nothing", "no files match"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, engine, setup, message: str) -> None:
    path = setup(tmp_path)
    with pytest.raises(StageError) as error:
        read(str(path)).run(engine=engine)
    assert message in str(error.value)
    assert error.value.exit_code == 2

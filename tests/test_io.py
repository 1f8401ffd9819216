import errno
import os
import stat
from pathlib import Path

import pytest

from zoo._io import (
    atomic_path,
    atomic_write_json,
    exchange,
    fsync_dir,
    is_no_space,
    no_space_message,
)


def test_atomic_write_replaces_and_uses_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "m.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_a_file_its_writer_recreates_still_gets_the_usual_mode(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    target = tmp_path / "w.safetensors"
    with atomic_path(target) as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))  # safetensors makes the file 0600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    ("code", "raised"), [(errno.EIO, True), (errno.ENOSPC, True), (errno.EINVAL, False)]
)
def test_a_directory_fsync_raises_io_errors_and_ignores_only_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, raised: bool
) -> None:
    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing)
    if raised:
        with pytest.raises(OSError) as info:
            fsync_dir(tmp_path)
        assert info.value.errno == code
    else:
        fsync_dir(tmp_path)


def test_no_space_is_recognised_from_oserror_and_from_torch_archive_writer() -> None:
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_no_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_no_space(OSError(errno.EACCES, "Permission denied"))
    message = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
    assert is_no_space(RuntimeError(message))
    assert not is_no_space(RuntimeError("unexpected pos"))
    safetensors = "Error while serializing: I/O error: No space left on device (os error 28)"
    assert is_no_space(Exception(safetensors))
    assert no_space_message("/x", 3_400_000) == "no space left on /x (needs ~3 MB)"


def test_exchange_swaps_two_directories_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("b")
    assert exchange(tmp_path / "a", tmp_path / "b")  # Linux file systems here support it
    assert (tmp_path / "a" / "f").read_text() == "b" and (tmp_path / "b" / "f").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")


def test_an_atomic_write_never_replaces_what_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    from zoo._io import NotARegularFileError, atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFileError, match="not a regular file"):
        atomic_write_text(fifo, "x")
    assert fifo.is_fifo()
    (tmp_path / "dir").mkdir()
    with pytest.raises(NotARegularFileError):
        atomic_write_text(tmp_path / "dir", "x")
    assert (tmp_path / "dir").is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_atomic_write_replaces_a_symbolic_link_itself_never_its_target(
    tmp_path: Path,
) -> None:
    from zoo._io import atomic_write_text

    outside = tmp_path / "outside.json"
    outside.write_text("theirs")
    link = tmp_path / "run" / "metrics.json"
    link.parent.mkdir()
    link.symlink_to(outside)
    atomic_write_text(link, "ours")
    assert not link.is_symlink() and link.read_text() == "ours"
    assert outside.read_text() == "theirs"


def _proc_shows_the_umask() -> bool:
    try:
        return b"\nUmask:" in Path("/proc/self/status").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not _proc_shows_the_umask(), reason="no Umask line in /proc/self/status")
def test_the_usual_mode_reads_the_umask_without_setting_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo._io import usual_mode

    before = os.umask(0o027)
    try:

        def no_umask(mask: int) -> int:
            raise AssertionError("os.umask changes the umask, which a thread creating a file sees")

        with monkeypatch.context() as patched:
            patched.setattr(os, "umask", no_umask)
            # Read when asked, not at import: the umask set after zoo._io was imported.
            assert usual_mode(0o666) == 0o640
            assert usual_mode(0o777) == 0o750
    finally:
        os.umask(before)
    assert usual_mode(0o666) == 0o666 & ~before


def test_the_usual_mode_without_proc_sets_the_umask_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    from zoo._io import usual_mode

    real_open = builtins.open

    def no_proc(file: object, *args: object, **kwargs: object) -> object:
        if str(file).startswith("/proc/"):
            raise FileNotFoundError(2, "no /proc here", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    before = os.umask(0o077)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(builtins, "open", no_proc)
            assert usual_mode(0o666) == 0o600
        assert os.umask(0o077) == 0o077  # and it is still the process's umask
    finally:
        os.umask(before)

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import lifecycle
from services.common.errors import InvalidSettingsError
from services.common.lifecycle import (
    check_directory_if_present,
    ensure_writable_directory,
    serve_metrics,
    tune_garbage_collection,
)
from services.common.settings import load_settings
from services.feedback.settings import FeedbackSettings
from services.hotpath.settings import HotPathSettings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_raises_young_threshold_and_freezes() -> None:
    young, middle, old = gc.get_threshold()

    tune_garbage_collection(young + 1000)

    assert gc.get_threshold() == (young + 1000, middle, old)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_zero_threshold_changes_nothing() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()

    tune_garbage_collection(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_serve_metrics_serves_nothing_when_port_is_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []
    monkeypatch.setattr(
        lifecycle, "start_http_server", lambda port, addr: started.append(port)
    )
    monkeypatch.setenv("CARTWHEEL_FEEDBACK_METRICS_PORT", "0")
    settings = load_settings(FeedbackSettings)

    serve_metrics(settings, settings.metrics_port, settings.metrics_host)

    assert started == []


def test_serve_metrics_names_variable_when_port_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(InvalidSettingsError) as caught:
            serve_metrics(HotPathSettings(), port, "127.0.0.1")

    assert "CARTWHEEL_HOTPATH_METRICS_PORT" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_ensure_writable_directory_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(tmp_path / "a-file" / "dir", "CARTWHEEL_X_DIR")

    assert "CARTWHEEL_X_DIR=" in str(caught.value)


def test_ensure_writable_directory_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / "a-file" / "dir"

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(directory, "CARTWHEEL_X_DIR", option="--output")

    assert str(caught.value).startswith(
        f"invalid option --output={str(directory)!r} (in place of CARTWHEEL_X_DIR): "
    )


def test_ensure_writable_directory_creates_it_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    ensure_writable_directory(tmp_path / "new" / "dir", "CARTWHEEL_X_DIR")

    assert list((tmp_path / "new" / "dir").iterdir()) == []


def test_check_directory_passes_missing_path(tmp_path: Path) -> None:
    check_directory_if_present(tmp_path / "new" / "dir", "CARTWHEEL_X_DIR")

    assert list(tmp_path.iterdir()) == []


def test_ensure_writable_directory_says_file_is_not_a_directory(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "a-file"
    directory.write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(directory, "CARTWHEEL_X_DIR")

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_X_DIR={str(directory)!r}: it is a file, not a "
        "directory; expected a directory this process can create and write"
    )


def test_ensure_writable_directory_names_file_above_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(tmp_path / "a-file" / "dir", "CARTWHEEL_X_DIR")

    assert f": {str(tmp_path / 'a-file')!r}, above it, is a file, not a directory;" in (
        str(caught.value)
    )


def test_ensure_writable_directory_says_link_target_is_missing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "link"
    directory.symlink_to(tmp_path / "gone")

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(directory, "CARTWHEEL_X_DIR")

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_X_DIR={str(directory)!r}: it is a symbolic "
        f"link to a missing target, {str(tmp_path / 'gone')!r}; expected a "
        "directory this process can create and write"
    )
    assert not (tmp_path / "gone").exists()


def test_ensure_writable_directory_names_dangling_link_above_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "link").symlink_to("gone")

    with pytest.raises(InvalidSettingsError) as caught:
        ensure_writable_directory(tmp_path / "link" / "dir", "CARTWHEEL_X_DIR")

    assert (
        f": {str(tmp_path / 'link')!r}, above it, is a symbolic link to a missing "
        "target, 'gone';"
    ) in str(caught.value)


def test_ensure_writable_directory_says_link_loops(tmp_path: Path) -> None:
    directory = tmp_path / "loop"
    directory.symlink_to("loop")

    with pytest.raises(InvalidSettingsError, match=": it is a symbolic link in a loop"):
        ensure_writable_directory(directory, "CARTWHEEL_X_DIR")


def test_check_directory_says_file_is_not_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a-file"
    directory.write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        check_directory_if_present(directory, "CARTWHEEL_X_DIR")

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_X_DIR={str(directory)!r}: it is a file, not a "
        "directory; expected a directory this process can read, or a path where "
        "nothing exists yet"
    )


def test_check_directory_names_file_above_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")

    with pytest.raises(InvalidSettingsError) as caught:
        check_directory_if_present(tmp_path / "a-file" / "dir", "CARTWHEEL_X_DIR")

    assert f": {str(tmp_path / 'a-file')!r}, above it, is a file, not a directory;" in (
        str(caught.value)
    )


@pytest.fixture
def read_only_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every directory look readable but not writable to this process.

    Permission bits do not stop root, so the test cannot use them.
    """
    monkeypatch.setattr(
        lifecycle.os, "access", lambda path, mode: not mode & lifecycle.os.W_OK
    )


def test_check_directory_accepts_read_only_for_read(
    tmp_path: Path, read_only_directories: None
) -> None:
    check_directory_if_present(tmp_path, "CARTWHEEL_X_DIR")


def test_check_directory_rejects_read_only_for_write(
    tmp_path: Path, read_only_directories: None
) -> None:
    with pytest.raises(InvalidSettingsError) as caught:
        check_directory_if_present(tmp_path, "CARTWHEEL_X_DIR", access="read and write")

    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_X_DIR={str(tmp_path)!r}: Permission denied; "
        "expected a directory this process can read and write, or a path where "
        "nothing exists yet"
    )

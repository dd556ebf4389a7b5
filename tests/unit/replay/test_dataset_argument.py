"""The dataset argument of ``learner evaluate`` and ``trainer compare``."""

from __future__ import annotations

import pytest

from services.cli.__main__ import main
from services.cli.command import build_parser
from services.replay.dataset_argument import dataset_name
from services.trainer import compare

COMMANDS = [("learner", "evaluate"), ("trainer", "compare")]


def parsed_dataset(*argv: str) -> str:
    args = build_parser(("services.learner.cli", "services.trainer.cli")).parse_args(
        list(argv)
    )
    return dataset_name(args)


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``cartwheel argv``, check that it exits with 2, and return stderr."""
    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert caught.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_dataset_argument_reads_positional_name(command: tuple[str, str]) -> None:
    assert parsed_dataset(*command, "retailrocket") == "retailrocket"


@pytest.mark.parametrize("command", COMMANDS)
def test_dataset_argument_reads_option(command: tuple[str, str]) -> None:
    assert parsed_dataset(*command, "--dataset", "taobao") == "taobao"


@pytest.mark.parametrize("command", COMMANDS)
def test_dataset_argument_defaults_to_rees46(command: tuple[str, str]) -> None:
    assert parsed_dataset(*command) == "rees46"


@pytest.mark.parametrize("command", COMMANDS)
def test_dataset_argument_accepts_same_name_twice(command: tuple[str, str]) -> None:
    assert parsed_dataset(*command, "otto", "--dataset", "otto") == "otto"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "names",
    [("otto", "--dataset", "taobao"), ("--dataset", "taobao", "otto")],
    ids=["positional-first", "option-first"],
)
def test_dataset_argument_rejects_two_names_as_usage_error(
    command: tuple[str, str],
    names: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = _usage_error([*command, *names], capsys)

    assert error.startswith(f"usage: cartwheel {' '.join(command)}")
    assert error.endswith(
        "error: dataset given twice, as 'otto' and --dataset='taobao'; give it once\n"
    )


def test_compare_module_rejects_two_names_as_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        compare.main(["otto", "--dataset", "taobao"])

    assert caught.value.code == 2
    assert "dataset given twice" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("nosuch",), "dataset 'nosuch' is not registered; expected one of "),
        (("--dataset", "nosuch"), "dataset 'nosuch' is not registered"),
        (("olist",), "dataset 'olist' cannot be replayed: "),
    ],
    ids=["unknown", "unknown-option", "without-events"],
)
def test_dataset_argument_rejects_unreplayable_name_as_usage_error(
    command: tuple[str, str],
    names: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = _usage_error([*command, *names], capsys)

    assert error.startswith(f"usage: cartwheel {' '.join(command)}")
    assert f"error: {message}" in error

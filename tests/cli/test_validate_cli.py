"""``northstar validate``: output, exit codes 0/1/2, ``--strict``, ``--format json``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).parents[2]
DEFINITIONS = ROOT / "definitions"
SPEC_DATA = ROOT / "tests" / "spec" / "data"
SEEDED = SPEC_DATA / "seeded_mistakes.yaml"
LINT = SPEC_DATA / "lint"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_definitions_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--strict", str(DEFINITIONS))
    assert code == 0
    assert out.splitlines()[-1].endswith(": ok")
    assert f"{len(list(DEFINITIONS.glob('*.yaml')))} files checked: 0 errors, 0 warnings" in out


def test_default_path_is_definitions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(capsys, "validate")
    assert code == 0
    assert "files checked" in out


def test_errors_exit_1_and_are_printed_sorted_by_file_and_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "validate", str(SEEDED), str(DEFINITIONS / "education.yaml"))
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == "2 files checked: 5 errors, 0 warnings, 0 info: FAILED"
    located = [(line.split(":")[0], int(line.split(":")[1])) for line in lines[:-1]]
    assert located == sorted(located)
    assert all(line.startswith(str(SEEDED)) for line in lines[:-1])
    assert (
        ": error: metric `weekly_learners`: unknown key `ownr` (hint: did you mean `owner`?" in out
    )


def test_warnings_pass_but_fail_with_strict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(LINT))
    assert code == 0 and ": warning: " in out
    assert out.splitlines()[-1].endswith(": ok")
    code, out, _ = run(capsys, "validate", "--strict", str(LINT))
    assert code == 1
    assert out.splitlines()[-1].endswith(": FAILED")


@pytest.mark.parametrize("name", sorted(p.name for p in LINT.glob("*.yaml")))
def test_each_lint_example_fails_strict(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert run(capsys, "validate", "--strict", str(LINT / name))[0] == 1


def test_info_never_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--strict", str(DEFINITIONS / "learning_users.yaml"))
    assert code == 0 and ": info: no business KPI" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "no/such/dir"], "no such file or directory: no/such/dir"),
        (["validate", "--format", "xml"], "invalid choice: 'xml'"),
        (["validate", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "choose a command"),
    ],
)
def test_bad_usage_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and out == ""


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--help")
    assert code == 0 and "--strict" in out


def test_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--format", "json", str(SEEDED))
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["counts"] == {"error": 5, "warning": 0, "info": 0}
    first = report["issues"][0]
    assert set(first) == {"severity", "file", "line", "path", "metric", "rule", "message", "hint"}
    assert first["file"] == str(SEEDED) and isinstance(first["line"], int)
    code, out, _ = run(capsys, "validate", "--format", "json", str(DEFINITIONS))
    assert code == 0 and json.loads(out)["ok"] is True
    assert {t["tree"] for t in json.loads(out)["trees"]} >= {"education", "learning_users"}


def test_every_registered_command_is_a_subcommand() -> None:
    parser = build_parser()
    names = {action.dest for action in parser._actions}  # argparse keeps subparsers there
    assert "help" in names
    for command in COMMANDS:
        assert callable(command.register)
    assert main(["tree", "--help"]) == 0 and main(["validate", "--help"]) == 0


def northstar_executable() -> str:
    found = shutil.which("northstar", path=str(Path(sys.executable).parent)) or shutil.which(
        "northstar"
    )
    if found is None:
        pytest.skip("the northstar console script is not installed (pip install -e .)")
    return found


def test_console_script(tmp_path: Path) -> None:
    exe = northstar_executable()
    env = {**os.environ, "COLUMNS": "100"}
    ok = subprocess.run(
        [exe, "validate", "--strict", str(DEFINITIONS)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "files checked" in ok.stdout
    bad = subprocess.run(
        [exe, "validate", str(SEEDED)], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode == 1 and "unknown key `ownr`" in bad.stdout
    usage = subprocess.run(
        [exe, "validate", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert usage.returncode == 2 and "no such file or directory" in usage.stderr
    tree = subprocess.run(
        [exe, "tree", str(DEFINITIONS / "education.yaml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert tree.returncode == 0 and "weekly_learning_minutes" in tree.stdout
    assert "\x1b[" not in tree.stdout  # no TTY: plain text, no escape codes

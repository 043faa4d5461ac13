"""Workspace layout, configuration errors, key handling, audit chain."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.config import load_config
from telcoreach.errors import ConfigError, PrivacyError, WorkspaceError
from telcoreach.privacy import load_or_create_key, verify_audit_log
from telcoreach.workspace import Workspace

runner = CliRunner()


def test_init_creates_layout_and_private_key(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "ws"), "--json"])

    root = tmp_path / "ws"
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workspace"] == str(root)
    for name in ("config.yaml", "audit.log", "lake", "models", "reports", "exports"):
        assert (root / name).exists()
    assert stat.S_IMODE((root / "key").stat().st_mode) == 0o600


def test_key_from_environment_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("TELCOREACH_KEY", "ab" * 32)

    key = load_or_create_key(tmp_path / "key")

    assert key == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "key").exists()


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "key"
    path.write_text("ab" * 32)
    path.chmod(0o644)

    with pytest.raises(PrivacyError, match="chmod 600"):
        load_or_create_key(path)


def test_config_error_names_path_expected_and_found(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("profile:\n  school_zone_m: far\n  nigth_hours: [21, 7]\n")

    with pytest.raises(ConfigError) as error:
        load_config(path)

    message = str(error.value)
    assert "profile.school_zone_m: input should be a valid number" in message
    assert "found 'far'" in message
    assert "profile.nigth_hours: unknown key" in message


def test_opening_a_folder_that_is_not_a_workspace_says_how_to_fix(tmp_path):
    with pytest.raises(WorkspaceError, match="telcoreach init"):
        Workspace.open(tmp_path)


def test_cli_error_is_one_line_and_exit_status_one(tmp_path):
    result = runner.invoke(app, ["profile", "--workspace", str(tmp_path)])

    assert result.exit_code == 1
    assert "is not a telcoreach workspace" in result.output
    assert "Traceback" not in result.output


def test_edited_audit_line_is_detected_and_named(tmp_path):
    workspace = Workspace.create(tmp_path / "ws")
    for action in ("ingest", "profile", "audience"):
        workspace.audit(action=action, purpose="test", subscribers=3)
    lines = workspace.audit_path.read_text().splitlines()
    lines[1] = lines[1].replace('"subscribers": 3', '"subscribers": 4')
    workspace.audit_path.write_text("\n".join(lines) + "\n")

    result = verify_audit_log(workspace.audit_path)

    assert not result.ok
    assert result.broken_line == 2


def test_intact_audit_log_verifies(tmp_path):
    workspace = Workspace.create(tmp_path / "ws")
    for action in ("ingest", "profile"):
        workspace.audit(action=action, purpose="test")

    assert verify_audit_log(workspace.audit_path).ok


def test_config_that_is_not_utf8_is_named_with_the_fix(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes("city: 北京\n".encode("gbk"))

    with pytest.raises(ConfigError, match=r"config.yaml is not UTF-8 .*iconv"):
        load_config(path)


def test_run_refuses_an_unknown_engine_before_touching_the_workspace(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("city: test\n", encoding="utf-8")

    result = CliRunner().invoke(
        app,
        ["run", "--config", str(config), "-w", str(tmp_path / "ws"), "--engine", "x"],
    )

    assert result.exit_code == 1
    assert "--engine must be duckdb or spark" in result.output
    assert not (tmp_path / "ws").exists()

"""``shoal ambassador split``'s flags and configuration file."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from shoal.cli.ambassador_split import split_command


def test_missing_flags_and_located_config_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(split_command, ["--weight", "10"])
    assert result.exit_code == 2
    assert "missing --upstream, --canary" in result.output
    config = tmp_path / "split.yaml"
    config.write_text("upstream: 127.0.0.1:8080\ncanary: nowhere\nweight: 120\nstickyCookei: s\n")
    result = runner.invoke(split_command, ["--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:3:9: weight: " in result.output
    assert (
        f'{config}:4:1: stickyCookei: unknown field "stickyCookei"; did you mean "stickyCookie"?'
        in result.output
    )
    config.write_text("upstream: 127.0.0.1:8080\ncanary: nowhere\n")
    result = runner.invoke(split_command, ["--config", str(config)])
    assert result.exit_code == 1
    assert "expected HOST:PORT, got 'nowhere'" in result.output

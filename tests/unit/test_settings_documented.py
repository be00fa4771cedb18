from __future__ import annotations

from pathlib import Path

from juhe_sync.config import Settings, settings_table


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "run `juhe-sync settings` and paste its table into README.md"
    for name in Settings.model_fields:
        assert f"JUHE_SYNC_{name.upper()}" in readme

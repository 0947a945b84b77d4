"""The example config shipped beside the unit documents exactly the defaults."""

from pathlib import Path

from aerd import config

REPO = Path(__file__).resolve().parent.parent


def test_example_config_is_the_defaults():
    assert config.load(REPO / "systemd" / "aerd.toml") == config.Settings()


def test_every_setting_is_in_the_example():
    text = (REPO / "systemd" / "aerd.toml").read_text()
    for section, kinds in config._FIELDS.items():
        assert f"[{section}]" in text
        for key in kinds:
            assert f"\n{key} = " in text, f"[{section}] {key} missing from the example"

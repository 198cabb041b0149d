"""Config loading: overrides, profile resolution, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from exitstorm.lab.config import load_experiment, parse_override
from exitstorm.schema import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_override_values_are_toml_or_bare_strings() -> None:
    assert parse_override("scenario.duration_s=0.5") == (["scenario", "duration_s"], 0.5)
    assert parse_override("sched.run_to_parity=false") == (["sched", "run_to_parity"], False)
    assert parse_override("scenario.events=['actor']") == (["scenario", "events"], ["actor"])
    assert parse_override("device=vm_2core") == (["device"], "vm_2core")
    assert parse_override("periodic[1].thread.nice=-4") == (["periodic", 1, "thread", "nice"], -4)
    with pytest.raises(ConfigError):
        parse_override("noequals")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_list_elements_can_be_overridden_and_bad_indices_are_named() -> None:
    exp = load_experiment(ROOT / "configs" / "cpu_contention.toml", ["periodic[0].budget_us=9000"])
    assert exp.config.periodic[0].budget_us == 9000
    with pytest.raises(ConfigError, match=r"periodic\[7\]: --set expected an existing list element"):
        load_experiment(ROOT / "configs" / "cpu_contention.toml", ["periodic[7].budget_us=9000"])


def test_shipped_config_loads_and_overrides_apply() -> None:
    exp = load_experiment(ROOT / "configs" / "cpu_contention.toml", ["scenario.duration_s=0.1"], seed=7)
    assert exp.config.scenario.duration_s == 0.1 and exp.config.scenario.seed == 7
    assert exp.device.ncpus == 8
    assert [c.name for c in exp.device.clusters] == ["little", "big", "prime"]


def test_device_can_be_switched_by_name() -> None:
    exp = load_experiment(ROOT / "configs" / "cpu_contention.toml",
                          ["device=vm_2core", "scenario.duration_s=0.1"])
    assert exp.device.ncpus == 2


@pytest.mark.parametrize("device", sorted((ROOT / "configs" / "devices").glob("*.toml")))
def test_every_device_profile_validates(device: Path) -> None:
    exp = load_experiment(ROOT / "configs" / "cpu_contention.toml", [f"device={device.stem}"])
    assert exp.device.name == device.stem

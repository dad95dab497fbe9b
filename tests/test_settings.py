"""Profile sizing, one way: every method's settings dataclass builds both profiles with the same keys."""

import dataclasses
import importlib

import pytest

import animlib
from animlib.runtime import ProfileSettings


def _all_settings():
    for name in animlib.SUBMODULES:
        importlib.import_module(f"animlib.{name}")
    found, todo = [], list(ProfileSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


SETTINGS = _all_settings()


def test_every_method_module_has_settings():
    names = {c.__name__ for c in SETTINGS}
    assert {"NextFrameSettings", "CinemagraphSettings", "StyleSettings", "FastStyleSettings", "DepthSettings",
            "VAESettings", "VAEGANSettings", "VideoAESettings"} <= names


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_quick_and_full_set_every_field_and_for_profile_picks_them(cls):
    assert dataclasses.is_dataclass(cls)
    fields = dataclasses.fields(cls)
    assert fields, f"{cls.__name__} has no fields"
    no_default = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert no_default == [f.name for f in fields], f"{cls.__name__}: a default lets one profile forget a field"
    quick, full = cls.quick(), cls.full()
    assert type(quick) is cls and type(full) is cls
    assert quick != full, "the two profiles should differ somewhere"
    assert cls.for_profile("quick") == quick and cls.for_profile("full") == full
    with pytest.raises(ValueError, match="profile"):
        cls.for_profile("medium")


def test_the_base_class_says_what_is_missing():
    @dataclasses.dataclass
    class Half(ProfileSettings):
        n: int

        @classmethod
        def quick(cls):
            return cls(n=1)

    assert Half.for_profile("quick").n == 1
    with pytest.raises(NotImplementedError, match="Half must define full"):
        Half.for_profile("full")


def test_training_length_from_steps_or_epochs():
    from animlib.vae import VAESettings

    assert VAESettings.quick().train_steps(100) == VAESettings.quick().steps
    assert VAESettings.full().train_steps(100) == 100 * VAESettings.full().epochs
    with pytest.raises(ValueError, match="steps or epochs"):
        dataclasses.replace(VAESettings.quick(), steps=None).train_steps(10)

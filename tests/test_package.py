"""The package surface: the core API from ``animlib`` itself, modules on first use, a light import."""

import subprocess
import sys

import pytest

import animlib


def test_core_names_resolve_to_their_defining_modules():
    import animlib.engine
    import animlib.runtime

    assert animlib.Trainer is animlib.engine.Trainer
    assert animlib.start_chapter is animlib.runtime.start_chapter
    for name in animlib.__all__:
        assert getattr(animlib, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        animlib.nonexistent  # noqa: B018


def test_every_listed_module_imports_and_is_an_attribute():
    for name in animlib.SUBMODULES:
        mod = getattr(animlib, name)
        assert mod.__name__ == f"animlib.{name}"
    assert animlib.data.rings.ring_mixture is not None and animlib.data.images.sample_image is not None


def test_the_download_layer_loads_without_pytorch():
    code = "import sys, animlib, animlib.data.download, animlib.files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

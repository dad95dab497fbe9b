"""The nbval stage waits long enough for a finished cell's output (the repository's conftest.py)."""

import json
import shutil
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def notebook_dir():
    # Inside the repository, so that its conftest.py applies as it does to _build/executed.
    d = ROOT / "_build" / f"nbval-settings-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [
        {"name": "stdout", "output_type": "stream", "text": "2\n"}], "source": "print(1 + 1)"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    (d / "tiny.ipynb").write_text(json.dumps(nb))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class _Recorder:
    def __init__(self):
        self.timeouts = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        self.timeouts = [getattr(i, "output_timeout", None) for i in items]


@pytest.mark.parametrize("args,expected", [([], 300.0), (["--nbval-output-timeout", "42"], 42.0)])
def test_nbval_cells_get_the_generous_output_wait(notebook_dir, args, expected):
    pytest.importorskip("nbval")
    rec = _Recorder()
    code = pytest.main(["--nbval", str(notebook_dir), "--collect-only", "-q", "-p", "no:cacheprovider",
                        "--rootdir", str(ROOT), *args], plugins=[rec])
    assert code == 0
    assert rec.timeouts == [expected]  # nbval's own default would be 5

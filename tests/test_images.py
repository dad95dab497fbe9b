"""animlib.data.images: sample photographs and the painterly style image."""

import pytest
import torch

from animlib.data.images import brushstroke_painting, sample_image


def test_sample_image_and_painting():
    x = sample_image("chelsea", 64)
    assert x.shape[0] == 3 and min(x.shape[1:]) == 64 and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0
    g = sample_image("camera", 32)
    assert g.shape[0] == 3 and torch.equal(g[0], g[1])
    p = brushstroke_painting((40, 48), seed=1)
    assert p.shape == (3, 40, 48) and 0 <= p.min() and p.max() <= 1
    torch.testing.assert_close(p, brushstroke_painting((40, 48), seed=1))  # deterministic
    assert not torch.equal(p, brushstroke_painting((40, 48), seed=2))
    with pytest.raises(ValueError, match="skimage.data"):
        sample_image("no_such_image")

"""Alt text and kernel-free interactivity of animlib.viz outputs (what the browser test checks in the book)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from animlib import viz


def _img_alts(markup: str) -> list:
    return re.findall(r'<img[^>]*\balt="([^"]*)"', markup)


def test_image_grid_default_alt_names_titles_and_suptitle():
    fig = viz.image_grid(np.random.rand(4, 8, 8), nrow=4, titles=["a", "b", "c", "d"])
    fig.suptitle("The sweep\n(4 steps)")  # read when the figure is displayed, not when it is made
    markup = fig._repr_html_()
    assert _img_alts(markup) == ["The sweep (4 steps): 4 images in a row: a, b, c, d"]
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', markup).group(1))
    assert Image.open(io.BytesIO(png)).size[0] > 0


def test_given_alt_wins_and_is_escaped():
    fig = viz.image_grid(np.random.rand(2, 8, 8), alt='Two "noise" images & nothing else')
    assert _img_alts(fig._repr_html_()) == ["Two &quot;noise&quot; images &amp; nothing else"]
    assert fig.animlib_alt() == 'Two "noise" images & nothing else'


def test_storyboard_and_plot_history_alts():
    fig = viz.storyboard({"input": np.random.rand(3, 8, 8), "output": np.random.rand(2, 8, 8)},
                         col_labels=["t=0", "t=1", "t=2"])
    assert fig.animlib_alt() == "Storyboard of 2 rows of up to 3 frames; rows: input, output; columns: t=0, t=1, t=2"
    fig = viz.plot_history([{"loss": 1.0, "acc": 0.1}, {"loss": 0.5, "acc": 0.2}], smooth=0.5, logy=True, separate=True)
    assert fig.animlib_alt() == "2 stacked line plots against the training step (smoothed, log scale): loss, acc"
    assert _img_alts(fig._repr_html_())


def test_animation_frame_image_and_slider_are_labelled():
    markup = viz.animate(np.random.rand(3, 8, 8), alt="Noise flickering").data
    assert 'aria-label="Noise flickering"' in markup
    assert _img_alts(markup) == ["Noise flickering"]
    assert re.search(r'class="anim-slider" aria-label="Frame"', markup)


def test_scrub_widget_links_work_in_the_browser_without_kernel():
    widgets = pytest.importorskip("ipywidgets")
    box = viz.scrub_widget({"a": np.random.rand(3, 8, 8), "b": np.random.rand(2, 8, 8)}, scale=1)
    dropdown, view, slider = box.children
    assert isinstance(view, widgets.Stack) and [len(s.children) for s in view.children] == [3, 3]  # b padded
    links = [(lnk.source, lnk.target) for lnk in box._animlib_links]
    assert all(lnk._model_name == "DirectionalLinkModel" for lnk in box._animlib_links)  # runs in the browser
    assert ((slider, "value"), (view.children[0], "selected_index")) in links
    assert ((dropdown, "index"), (view, "selected_index")) in links
    alts = [_img_alts(h.value)[0] for h in view.children[0].children]
    assert alts == ["a, frame 0 of 2", "a, frame 1 of 2", "a, frame 2 of 2"]

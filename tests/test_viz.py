"""Figure helpers: what they draw (data on the axes), not just that they run."""

import matplotlib

matplotlib.use("Agg")  # headless test process; notebooks keep their inline backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from reidlab.viz import save_figure  # noqa: E402
from reidlab.viz.curves import plot_curves, plot_loss_curves  # noqa: E402
from reidlab.viz.heatmaps import correlation_heatmaps  # noqa: E402
from reidlab.viz.overlays import attention_overlay, fusion_weight_strip, to_display_image, upsample_map  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_curves_mean_line_and_seed_band():
    df = pd.DataFrame({
        "variant": ["a"] * 4 + ["b"] * 2,
        "seed": [0, 0, 1, 1, 0, 0],
        "epoch": [1, 2, 1, 2, 1, 2],
        "mAP": [10.0, 20.0, 14.0, 30.0, 5.0, 6.0],
        "rank1": [1.0] * 6,
        "rank5": [2.0] * 6,
    })
    fig = plot_curves(df)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["mAP (%)", "Rank-1 (%)", "Rank-5 (%)"]
    lines = [ln for ln in axes[0].get_lines() if len(ln.get_xdata()) == 2]
    ys = sorted(tuple(np.round(ln.get_ydata(), 6)) for ln in lines)
    assert (12.0, 25.0) in ys and (5.0, 6.0) in ys  # mean over seeds per epoch
    assert axes[0].collections, "a variant with two seeds gets a std band"
    with pytest.raises(ValueError, match="missing columns"):
        plot_curves(df.drop(columns=["rank5"]))
    with pytest.raises(ValueError, match="empty"):
        plot_curves(df.iloc[:0])


def test_loss_curves_skip_empty_columns():
    m = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "loss_of": [np.nan, np.nan]})
    fig = plot_loss_curves(m)
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["loss"]


def test_correlation_heatmaps_side_by_side_fixed_scale():
    mats = {"plain": np.eye(3), "orth": np.array([[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1.0]])}
    summ = {"plain": {"mean_abs_offdiag": 0.0, "effective_rank": 3.0, "dims": 3}}
    fig = correlation_heatmaps(mats, summ, max_dims=2)
    heat = [ax for ax in fig.axes if ax.collections]
    assert len(heat) >= 2
    mesh = heat[0].collections[0]
    assert mesh.get_clim() == (-1.0, 1.0)
    assert mesh.get_array().size == 4  # only the first 2 x 2 drawn
    assert "eff. rank 3.0 / 3" in heat[0].get_title() and "first 2 of 3" in heat[0].get_title()
    with pytest.raises(ValueError, match="square"):
        correlation_heatmaps({"x": np.ones((2, 3))})
    fig = correlation_heatmaps({str(i): np.eye(2) for i in range(4)})  # 3 per row: 2 rows, 2 hidden slots
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["0", "1", "2", "3"]


def test_upsample_map_and_display_image():
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = upsample_map(m, (4, 6))
    assert up.shape == (4, 6) and up.min() == 0.0 and up.max() == 1.0
    assert up[0, 0] == 0.0 and up[-1, -1] == 1.0  # corners keep the extreme values
    assert np.all(np.diff(up, axis=1) >= -1e-12)  # monotone like the input rows
    assert np.all(upsample_map(np.full((2, 2), 5.0), (3, 3)) == 0.0)  # constant map: zeros, no NaN
    with pytest.raises(ValueError):
        upsample_map(np.array([[np.nan]]), (2, 2))
    u8 = np.full((4, 2, 3), 255, dtype=np.uint8)
    assert to_display_image(u8).max() == 1.0
    chw = np.zeros((3, 4, 2), dtype=np.float32)  # normalised zero = the ImageNet mean colour
    img = to_display_image(chw, normalized=True)
    np.testing.assert_allclose(img[0, 0], [0.485, 0.456, 0.406], atol=1e-6)


def test_attention_overlay_and_weight_strip(tmp_path):
    frames = [np.zeros((8, 4, 3), dtype=np.uint8) for _ in range(3)]
    maps = {"CAM": [np.ones((2, 1)), np.eye(2), None]}
    fig = attention_overlay(frames, maps, alpha=0.4)
    assert len(fig.axes) == 6
    over = fig.axes[4].get_images()  # second row, second frame: frame + overlay
    assert len(over) == 2 and over[1].get_alpha() == 0.4 and over[1].get_extent() == over[0].get_extent()
    assert len(fig.axes[5].get_images()) == 1  # None: no overlay
    with pytest.raises(ValueError, match="2 'CAM' maps for 3 frames"):
        attention_overlay(frames, {"CAM": [None, None]})

    w = {"mean": [1 / 3] * 3, "sc": [0.5, 0.1, 0.4]}
    fig = fusion_weight_strip(frames, w, (None, "blur", None), frame_indices=[4, 5, 6])
    frame_axes, bar_axes = fig.axes[:3], fig.axes[3:]
    assert frame_axes[1].get_title() == "t=5 blur"
    assert frame_axes[1].spines["top"].get_edgecolor()[:3] == matplotlib.colors.to_rgb("red")
    heights = [p.get_height() for p in bar_axes[1].patches]
    np.testing.assert_allclose(heights, [0.5, 0.1, 0.4])
    assert bar_axes[1].patches[1].get_facecolor()[:3] == matplotlib.colors.to_rgb("tab:red")
    out = save_figure(fig, tmp_path / "sub" / "w.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="corruption has 2 entries"):
        fusion_weight_strip(frames, w, (None, None))

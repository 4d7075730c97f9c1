"""apply_xf: raw images made with the forward .xf relation are corrected back."""

import numpy as np
import pytest

from stasnake.tilt.align_stack import apply_xf, tilt_axis_angle_deg, xf_from_axis_angle

BLOBS = [(10.0, -20.0, 3.0, 1.0), (-25.0, 5.0, 4.0, -0.7), (30.0, 22.0, 2.5, 0.5)]


def _analytic_image(x, y):
    """Asymmetric sum of Gaussians at (x, y) offsets from the image centre."""
    img = np.zeros(np.broadcast(x, y).shape)
    for bx, by, s, a in BLOBS:
        img += a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s * s))
    return img


@pytest.mark.parametrize(("psi", "shift"), [(85.0, (6.3, -4.2)), (-30.0, (0.0, 0.0)), (0.0, (-3.5, 2.0))])
def test_apply_xf_inverts_forward_relation(psi, shift):
    ny, nx = 96, 100
    c = np.array([nx // 2, ny // 2], dtype=float)
    xf = xf_from_axis_angle([psi], [shift])
    a = xf[0, :4].reshape(2, 2)
    d = xf[0, 4:]
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    raw_xy = np.stack([xx.ravel(), yy.ravel()])
    # raw(x_raw) = P(c + A (x_raw - c) + D), P analytic about its centre c
    ali_xy = c[:, None] + a @ (raw_xy - c[:, None]) + d[:, None]
    raw = _analytic_image(ali_xy[0] - c[0], ali_xy[1] - c[1]).reshape(ny, nx)
    aligned = apply_xf(raw[None].astype(np.float32), xf)[0]
    truth = _analytic_image(xx - c[0], yy - c[1])
    inner = (slice(20, -20), slice(20, -20))
    assert np.max(np.abs(aligned[inner] - truth[inner])) < 0.03
    assert np.corrcoef(aligned[inner].ravel(), truth[inner].ravel())[0, 1] > 0.999
    # the strongest blob sits where P has it
    iy, ix = np.unravel_index(np.argmax(aligned), aligned.shape)
    assert (ix - c[0], iy - c[1]) == (10, -20)
    np.testing.assert_allclose(tilt_axis_angle_deg(xf), [psi], atol=1e-9)


def test_apply_xf_fill_and_out_shape():
    rng = np.random.default_rng(0)
    raw = rng.normal(5.0, 1.0, size=(2, 40, 50)).astype(np.float32)
    xf = xf_from_axis_angle([0.0, 0.0], [[100.0, 0.0], [0.0, 0.0]])
    out = apply_xf(raw, xf, out_shape=(30, 60))
    assert out.shape == (2, 30, 60)
    # shifted far outside: everything is the image mean
    np.testing.assert_allclose(out[0], raw[0].mean(), rtol=1e-5)
    # identity: centres coincide, the overlapping region is copied exactly
    np.testing.assert_allclose(out[1][:, 5:55], raw[1][5:35, :], rtol=1e-6)


def test_tilt_axis_angle_from_xf_row():
    psi = 85.3
    p = np.radians(psi)
    row = [np.cos(p), np.sin(p), -np.sin(p), np.cos(p), 1.0, 2.0]
    assert tilt_axis_angle_deg(row) == pytest.approx(psi)

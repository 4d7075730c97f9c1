"""Apply IMOD .xf transforms: raw tilt images -> aligned stack.

Convention (docs/geometry-conventions, IMOD .xf semantics): per tilt one row
``A11 A12 A21 A22 DX DY``; in (x, y) = (column, row) index coordinates with
image centre ``c = (nx // 2, ny // 2)``::

    x_ali - c_ali = A (x_raw - c_raw) + D

so ``raw(x_raw) = P(c + A (x_raw - c) + D)`` and the aligned image is
``aligned(x_ali) = raw(c_raw + A^-1 (x_ali - c_ali - D))``. With
``A = R(-psi) = [[cos psi, sin psi], [-sin psi, cos psi]]`` the tilt-axis
angle is ``psi = -atan2(A21, A11)``.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def tilt_axis_angle_deg(xf) -> np.ndarray:
    """Tilt-axis angle psi (degrees) of each .xf row: ``-atan2(A21, A11)``.

    Parameters
    ----------
    xf : array_like
        (6,) or (n, 6) rows ``A11 A12 A21 A22 DX DY``.

    Returns
    -------
    np.ndarray
        () or (n,) angles in degrees.
    """
    xf = np.asarray(xf, dtype=np.float64)
    return -np.degrees(np.arctan2(xf[..., 2], xf[..., 0]))


def xf_from_axis_angle(psi_deg, shifts_xy=None) -> np.ndarray:
    """Build .xf rows with ``A = R(-psi)`` and shifts D.

    Parameters
    ----------
    psi_deg : array_like
        (n,) tilt-axis angles in degrees.
    shifts_xy : array_like, optional
        (n, 2) shifts (DX, DY) in pixels; zero when omitted.

    Returns
    -------
    np.ndarray
        (n, 6) rows ``A11 A12 A21 A22 DX DY``.
    """
    psi = np.radians(np.atleast_1d(np.asarray(psi_deg, dtype=np.float64)))
    n = psi.size
    d = np.zeros((n, 2)) if shifts_xy is None else np.asarray(shifts_xy, dtype=np.float64).reshape(n, 2)
    c, s = np.cos(psi), np.sin(psi)
    return np.column_stack([c, s, -s, c, d[:, 0], d[:, 1]])


def apply_xf(stack: np.ndarray, xf, out_shape=None, order: int = 1) -> np.ndarray:
    """Produce the aligned stack from raw images and their .xf transforms.

    ``aligned(x_ali) = raw(c_raw + A^-1 (x_ali - c_ali - D))`` in (x, y) =
    (column, row) coordinates, with ``c = (nx // 2, ny // 2)`` of the raw
    image and of the output image respectively. Points that fall outside the
    raw image are filled with that image's mean.

    Parameters
    ----------
    stack : np.ndarray
        (n, ny, nx) raw images (may be a memmap; read one image at a time).
    xf : array_like
        (n, 6) rows ``A11 A12 A21 A22 DX DY`` (pixels), one per image in stack
        order.
    out_shape : tuple of int, optional
        (ny_out, nx_out) of the aligned images; default the raw size.
    order : int
        Interpolation order: 1 bilinear (default), 3 cubic spline.

    Returns
    -------
    np.ndarray
        (n, ny_out, nx_out) float32 aligned stack.
    """
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n, ny, nx), got shape {stack.shape}")
    xf = np.asarray(xf, dtype=np.float64).reshape(-1, 6)
    n, ny, nx = stack.shape
    if xf.shape[0] != n:
        raise ValueError(f"{xf.shape[0]} .xf rows for a stack of {n} images")
    ny_o, nx_o = (ny, nx) if out_shape is None else (int(out_shape[0]), int(out_shape[1]))
    c_raw = np.array([nx // 2, ny // 2], dtype=np.float64)
    c_ali = np.array([nx_o // 2, ny_o // 2], dtype=np.float64)
    out = np.empty((n, ny_o, nx_o), dtype=np.float32)
    for i in range(n):
        a = xf[i, :4].reshape(2, 2)
        d = xf[i, 4:]
        a_inv = np.linalg.inv(a)
        # x_raw = a_inv @ x_ali + (c_raw - a_inv @ (c_ali + d)) in (x, y); swap to (row, col)
        offset_xy = c_raw - a_inv @ (c_ali + d)
        matrix_rc = a_inv[::-1, ::-1]
        offset_rc = offset_xy[::-1]
        img = np.asarray(stack[i], dtype=np.float32)
        out[i] = scipy.ndimage.affine_transform(
            img, matrix_rc, offset=offset_rc, output_shape=(ny_o, nx_o), order=order,
            mode="constant", cval=float(img.mean()), prefilter=order > 1,
        )
    return out

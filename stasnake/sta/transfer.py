"""Per-particle 3-D transfer (CTF x exposure) of subtomograms, for CTF-weighted averaging.

Why: a tomogram made from phase-flipped, dose-weighted tilts still carries, on
the central slice of tilt ``t``, the signal times ``|CTF_t(k)|`` times the
exposure attenuation of that tilt. Dividing the sum of particles by the number
of particles that measured each frequency (the binary missing wedge, Dynamo's
``fweight``) leaves this transfer in the average, and it is not constant over a
Fourier shell: late (high) tilts carry little high-resolution signal, and the
``|CTF|`` oscillation is the same for all particles of a tomogram. On the
synthetic demo (true poses, true alignment and defocus) that alone held the FSC
against the true unit to 0.25 at 15.7 Å; weighting each particle by its
transfer ``H`` and dividing by ``sum H^2`` (below) gave 0.72 (docs/protocol.md).

Model (per tomogram, :class:`TiltTransfer`; per particle, :func:`transfer_table`).
The subtomogram's Fourier component ``k`` (tomogram frame, Fourier slice of the
tilt ``t = atan2(kz, kx)`` nearest to ``k``, the slice convention of
:mod:`stasnake.tilt.reconstruct`) holds ``H_t(|k|) * T(k)`` with ``T`` the
protein-dark object (the tomograms' contrast) and::

    H_t = -CTF(dF_particle) * flip * D_t * DW_t

* ``dF_particle = dF_t + (X sin t - Z cos t) * px`` Å: the defocus of the
  particle at ``(X, Z)`` Å from the tomogram centre (the simulator's and
  :mod:`stasnake.tilt.ctf_correct`'s geometry: height ``-X sin t + Z cos t``
  toward the source lowers the defocus); ``dF_t`` is the tilt's defocus on the
  tilt axis (mean of U and V; astigmatism is left out of the weights).
* ``flip = -sign(CTF(dF_strip))`` for phase-flipped tilts, the factor the
  strip flip applied at the particle's column ``U = X cos t + Z sin t``
  (``dF_strip = dF_t + U tan t``), else 1. The CTF is negative at low
  resolution (protein dark), so ``H`` is positive where the flip was right.
* ``D_t = exp(-pre / 2 Ne(k))`` averaged over the tilt's own exposure (Grant &
  Grigorieff radiation damage, :func:`stasnake.tilt.dose.dose_filter`), and
  ``DW_t`` the exposure filter the workflow applied
  (:func:`stasnake.tilt.dose_weight.dose_weight_stack`), 1 when not applied.

:func:`stasnake.sta.average.accumulate_particles` adds ``H(R k) P(k)`` and
``H(R k)^2`` (``transfers=``); the average ``S / max(W, fmin)`` is then the
least-squares (Wiener-like, floor ``fmin``) estimate of ``T``: a frequency every
particle measured equally comes back unweighted, a CTF zero of one tomogram is
filled by the others.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import particle_positions
from stasnake.tilt.ctf import ctf_1d
from stasnake.tilt.dose import dose_attenuation

#: Radial samples per Fourier pixel of the particle box in the per-particle tables.
SAMPLES_PER_PIXEL = 4
_FIELDS = ("tilt_angle_deg", "defocus_angstrom", "pre_exposure_e_per_A2", "dose_e_per_A2",
           "weighting_exposure_e_per_A2")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TiltTransfer:
    """What one tomogram's tilts did to the signal (see the module docstring).

    Attributes
    ----------
    tilt_angle_deg, defocus_angstrom, pre_exposure_e_per_A2, dose_e_per_A2 : np.ndarray
        (n_tilts,) per tilt, sorted by angle: tilt (degrees, .tlt sign), defocus
        on the tilt axis (Å, positive underfocus), exposure before the tilt and
        of the tilt itself (e/Å²).
    weighting_exposure_e_per_A2 : np.ndarray
        (n_tilts,) exposure of the dose-weighting filter applied to each tilt
        (e/Å²); 0 where none was applied.
    phase_flipped : bool
        The tilts were phase-flipped (strip-based) before reconstruction.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics.
    centre_x_angstrom, centre_z_angstrom : float
        Tilt axis (x) and mid-plane (z) of the tomogram, Å from the first voxel
        (``(nx // 2) * px``, ``(nz // 2) * px``).
    """

    tilt_angle_deg: np.ndarray
    defocus_angstrom: np.ndarray
    pre_exposure_e_per_A2: np.ndarray
    dose_e_per_A2: np.ndarray
    weighting_exposure_e_per_A2: np.ndarray
    phase_flipped: bool
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    centre_x_angstrom: float
    centre_z_angstrom: float

    def __post_init__(self):
        n = None
        for name in _FIELDS:
            value = np.asarray(getattr(self, name), dtype=np.float64).ravel()
            if n is None:
                n = value.size
            if value.size != n or n == 0:
                raise ValueError(f"{name}: {value.size} values, expected {n} (one per tilt, at least one)")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name}: not finite")
            object.__setattr__(self, name, value)
        if np.any(np.diff(self.tilt_angle_deg) <= 0):
            raise ValueError("tilt_angle_deg must be strictly increasing")

    def to_dict(self) -> dict:
        """JSON-ready mapping (:func:`write_transfer`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def transfer_from_tilts(tilt_angles_deg, defocus_angstrom, pre_exposure_e_per_A2, dose_e_per_A2, *,
                        phase_flipped: bool, dose_weighting_reduction: float | None, voltage_kv: float,
                        cs_mm: float, amplitude_contrast: float, pixel_size_angstrom: float,
                        tomogram_shape_zyx) -> TiltTransfer:  # fmt: skip
    """Build a tomogram's :class:`TiltTransfer` from its per-tilt values (any order; sorted here).

    Parameters
    ----------
    tilt_angles_deg, defocus_angstrom, pre_exposure_e_per_A2, dose_e_per_A2 : array_like
        (n_tilts,) per reconstructed tilt, in one common order.
    phase_flipped : bool
        Whether the tilts were phase-flipped.
    dose_weighting_reduction : float or None
        The ``reduction`` of the applied dose weighting
        (:func:`stasnake.tilt.dose_weight.effective_exposure`); None when no
        weighting was applied.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics.
    pixel_size_angstrom : float
        Pixel size of the tomogram, Å.
    tomogram_shape_zyx : sequence of int
        (nz, ny, nx) of the tomogram.
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    order = np.argsort(angles)
    defocus = np.asarray(defocus_angstrom, dtype=np.float64).ravel()
    pre = np.asarray(pre_exposure_e_per_A2, dtype=np.float64).ravel()
    for name, values in (("defocus_angstrom", defocus), ("pre_exposure_e_per_A2", pre)):
        if values.size != angles.size:
            raise ValueError(f"{name}: {values.size} values for {angles.size} tilts")
    dose = np.broadcast_to(np.asarray(dose_e_per_A2, dtype=np.float64), pre.shape)
    if dose_weighting_reduction is None:
        weighting = np.zeros_like(pre)
    else:
        weighting = (1.0 - float(dose_weighting_reduction)) * (pre + dose)
    nz, _, nx = (int(v) for v in tomogram_shape_zyx)
    px = float(pixel_size_angstrom)
    return TiltTransfer(
        angles[order], defocus[order], pre[order], dose[order],
        weighting[order], bool(phase_flipped), float(voltage_kv), float(cs_mm), float(amplitude_contrast),
        (nx // 2) * px, (nz // 2) * px,
    )  # fmt: skip


def write_transfer(path: str | os.PathLike, model: TiltTransfer) -> None:
    """Write a :class:`TiltTransfer` as JSON (atomically)."""
    write_text_atomic(path, json.dumps(model.to_dict(), indent=1) + "\n")


def read_transfer(path: str | os.PathLike) -> TiltTransfer:
    """Read a :class:`TiltTransfer` written by :func:`write_transfer`; errors name the file and the key."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read the transfer model: {exc}") from exc
    names = [f.name for f in dataclasses.fields(TiltTransfer)]
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(path, f"transfer model lacks {', '.join(missing)}")
    try:
        return TiltTransfer(**{n: data[n] for n in names})
    except (TypeError, ValueError) as exc:
        raise InputError(path, str(exc)) from exc


def transfer_table(model: TiltTransfer, position_xyz_1based, box: int,
                   pixel_size_angstrom: float) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Radial transfer ``H_t(|k|)`` of every tilt for one particle (see the module docstring).

    Parameters
    ----------
    model : TiltTransfer
        The particle's tomogram.
    position_xyz_1based : array_like
        (3,) particle centre (x, y, z) in 1-based pixels of the tomogram it
        was cropped from (table ``x + dx`` ...).
    box : int
        Side n of the particle box, pixels (the kernel's frequencies are in
        cycles per n-box).
    pixel_size_angstrom : float
        Pixel size of the particle box (and of its tomogram), Å.

    Returns
    -------
    tilts_rad : np.ndarray
        (n_tilts,) float64 tilt angles, radians, increasing.
    table : np.ndarray
        (n_tilts, n_r) float64 ``H_t`` at ``|k| = j / SAMPLES_PER_PIXEL``
        cycles per box, ``j = 0 .. n_r - 1`` (up to past the box corner).
    samples_per_pixel : float
        ``SAMPLES_PER_PIXEL`` (table index per cycle per box).
    """
    px = float(pixel_size_angstrom)
    x, _, z = (float(v) for v in np.asarray(position_xyz_1based, dtype=np.float64).ravel())
    X = (x - 1.0) * px - model.centre_x_angstrom
    Z = (z - 1.0) * px - model.centre_z_angstrom
    n_r = int(np.ceil(np.sqrt(3.0) * box / 2 * SAMPLES_PER_PIXEL)) + 2
    k = np.arange(n_r, dtype=np.float64) / SAMPLES_PER_PIXEL / (box * px)  # 1/Å
    t = np.radians(model.tilt_angle_deg)[:, None]
    optics = (model.voltage_kv, model.cs_mm, model.amplitude_contrast)
    df = model.defocus_angstrom[:, None]
    ctf = ctf_1d(k[None, :], df + X * np.sin(t) - Z * np.cos(t), *optics)
    if model.phase_flipped:
        strip = ctf_1d(k[None, :], df + (X * np.cos(t) + Z * np.sin(t)) * np.tan(t), *optics)
        flip = np.where(strip > 0, -1.0, 1.0)  # as phase_flip_image
        flip[:, 0] = 1.0  # the flip leaves the mean
    else:
        flip = 1.0
    damage = dose_attenuation(k[None, :], model.pre_exposure_e_per_A2[:, None], model.dose_e_per_A2[:, None],
                              model.voltage_kv)  # fmt: skip
    weighting = dose_attenuation(k[None, :], model.weighting_exposure_e_per_A2[:, None], None, model.voltage_kv)
    return t[:, 0].copy(), -ctf * flip * damage * weighting, float(SAMPLES_PER_PIXEL)


class ParticleTransfers:
    """Lazy per-particle transfer tables for :func:`stasnake.sta.average.accumulate_particles`.

    ``ParticleTransfers(models, tomos, positions, box, apix)[i]`` is
    :func:`transfer_table` of particle ``i``, computed when asked.

    Parameters
    ----------
    models : dict
        Tomogram number -> :class:`TiltTransfer`.
    tomos : array_like
        (m,) tomogram number of each particle (table ``tomo``).
    positions_xyz_1based : array_like
        (m, 3) particle centres, 1-based tomogram pixels.
    box : int
        Particle box side, pixels.
    pixel_size_angstrom : float
        Particle pixel size, Å.
    source : str
        Named in the error when a particle's tomogram has no model.
    """

    def __init__(self, models: dict, tomos, positions_xyz_1based, box: int, pixel_size_angstrom: float,
                 source: str = "particles table"):  # fmt: skip
        self._models = models
        self._tomos = np.asarray(tomos, dtype=np.int64).ravel()
        self._positions = np.asarray(positions_xyz_1based, dtype=np.float64).reshape(-1, 3)
        if len(self._tomos) != len(self._positions):
            raise ValueError(f"{len(self._tomos)} tomogram numbers for {len(self._positions)} positions")
        unknown = sorted(set(self._tomos.tolist()) - set(models))
        if unknown:
            raise InputError(source, f"tomogram number(s) {unknown} have no transfer model (known: {sorted(models)})")
        self._box = int(box)
        self._apix = float(pixel_size_angstrom)

    def __len__(self) -> int:
        return len(self._tomos)

    def __getitem__(self, i: int):
        return transfer_table(self._models[int(self._tomos[i])], self._positions[i], self._box, self._apix)

    def subset(self, index) -> ParticleTransfers:
        """The transfers of the particles ``index`` (an integer array or boolean mask)."""
        out = object.__new__(ParticleTransfers)
        out._models, out._box, out._apix = self._models, self._box, self._apix
        out._tomos, out._positions = self._tomos[index], self._positions[index]
        return out


def load_particle_transfers(table, transfer_paths, tomo_numbers, box: int, pixel_size_angstrom: float,
                            source: str = "particles table") -> ParticleTransfers | None:  # fmt: skip
    """Transfers of a table's particles from the tomograms' model files, or None without files.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table (``tomo``, ``x``, ``y``, ``z``, ``dx``, ``dy``, ``dz``), in the order the
        particles are averaged.
    transfer_paths : sequence of str
        :func:`write_transfer` files; empty: CTF weighting is off (returns None).
    tomo_numbers : sequence of int
        The table ``tomo`` number of each file.
    box : int
        Particle box side, pixels.
    pixel_size_angstrom : float
        Particle pixel size, Å.
    source : str
        Named in errors (the table's file).
    """
    paths = list(transfer_paths or [])
    if not paths:
        return None
    numbers = [int(n) for n in tomo_numbers]
    if len(numbers) != len(paths):
        raise ValueError(f"{len(paths)} transfer files for {len(numbers)} tomogram numbers")
    models = {n: read_transfer(p) for n, p in zip(numbers, paths, strict=True)}
    return ParticleTransfers(models, table["tomo"].to_numpy(), particle_positions(table), box, pixel_size_angstrom,
                             source=source)  # fmt: skip


def transfer_at_frequencies(k_xyz, tilts_rad, table, samples_per_pixel: float) -> np.ndarray:
    """A particle's transfer at frequencies of its own (tomogram-frame) box, vectorised.

    The numpy twin of :func:`stasnake.kernels.accumulate.transfer_at` with ``R = I``
    (the alignment scores particles in their own frame): the table row of the
    tilt nearest to ``atan2(kz, kx)`` (folded to ``kx >= 0``), linear in ``|k|``;
    on the tilt axis the mean of the tilts. No wedge test.

    Parameters
    ----------
    k_xyz : array_like
        (L, 3) frequencies (kx, ky, kz), cycles per box.
    tilts_rad, table, samples_per_pixel
        From :func:`transfer_table`.

    Returns
    -------
    np.ndarray
        (L,) float64 transfer.
    """
    k = np.asarray(k_xyz, dtype=np.float64).reshape(-1, 3)
    tilts = np.asarray(tilts_rad, dtype=np.float64)
    table = np.asarray(table, dtype=np.float64)
    nr = table.shape[1]
    r = np.linalg.norm(k, axis=1) * samples_per_pixel
    j = np.minimum(r.astype(np.int64), nr - 2)
    r = np.minimum(r, nr - 1.0)
    f = r - j
    tx, tz = k[:, 0], k[:, 2]
    flip = (tx < 0) | ((tx == 0) & (tz < 0))
    t = np.arctan2(np.where(flip, -tz, tz), np.abs(tx))
    hi = np.clip(np.searchsorted(tilts, t), 1, len(tilts) - 1) if len(tilts) > 1 else np.zeros(len(t), np.int64)
    lo = np.maximum(hi - 1, 0)
    i = np.where(np.abs(t - tilts[lo]) <= np.abs(tilts[hi] - t), lo, hi)
    out = (1.0 - f) * table[i, j] + f * table[i, j + 1]
    axis = np.hypot(tx, tz) <= 1e-9 * np.maximum(1.0, np.abs(k[:, 1]))
    if axis.any():
        mean = table.mean(axis=0)
        out[axis] = (1.0 - f[axis]) * mean[j[axis]] + f[axis] * mean[j[axis] + 1]
    return out

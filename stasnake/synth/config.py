"""Parameters of a synthetic data set (all units in the names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthConfig:
    """All parameters of :func:`stasnake.synth.generate_dataset`.

    Lengths are Å unless the name says ``_px``; angles in degrees; doses in
    e/Å²; shapes (z, y, x) in pixels. ``lattice_offset_angstrom`` is added to
    the membrane radius to get the lattice radius (negative: lattice inside the
    membrane, as in immature HIV-1). ``snr`` is the variance ratio of signal
    to noise over the whole first (zero-tilt) image; later images have less
    signal (radiation damage, thicker ice). ``height_bin_angstrom`` is the
    width of the beam-height slabs that get their own defocus.
    ``movie_frames`` > 0 also writes every raw tilt image as a dose-fractionated
    movie (frames drift by ``movie_drift_px`` in all, divided by a gain
    reference), for the motion-correction stage.
    """

    seed: int = 0
    n_tiltseries: int = 2
    tomogram_shape_zyx: tuple[int, int, int] = (160, 384, 384)
    pixel_size_angstrom: float = 5.4
    n_vlps: int = 3
    vlp_radius_range_angstrom: tuple[float, float] = (330.0, 380.0)
    lattice_offset_angstrom: float = -90.0
    lattice_spacing_angstrom: float = 75.0
    lattice_coverage_range: tuple[float, float] = (0.6, 0.8)
    unit_box_px: int = 32
    membrane_leaflet_separation_angstrom: float = 38.0
    membrane_leaflet_sigma_angstrom: float = 6.0
    membrane_density: float = 0.6
    n_fiducials: int = 8
    bead_diameter_angstrom: float = 100.0
    bead_density: float = 2.0
    ice_thickness_angstrom: float | None = None  # default: 85% of the tomogram thickness
    ice_density: float = 0.02
    inelastic_mfp_angstrom: float = 3500.0
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    tilt_scheme: str = "dose-symmetric"  # or "bidirectional", "unidirectional"
    dose_symmetric_group: int = 2
    dose_per_tilt_e_per_A2: float = 3.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    defocus_range_um: tuple[float, float] = (2.5, 4.0)
    astigmatism_angstrom: float = 300.0
    defocus_jitter_angstrom: float = 100.0
    tilt_axis_angle_deg: float = 85.0
    shift_rms_px: float = 4.0
    snr: float = 0.5
    height_bin_angstrom: float = 250.0
    margin_px: int = 6
    movie_frames: int = 0  # > 0: also write each tilt as a drifting movie of this many frames
    movie_drift_px: float = 4.0  # length of each movie's drift path (pixels)

    @classmethod
    def demo(cls) -> SynthConfig:
        """2 tilt series of 384x384x160 px at 5.4 Å/px, 3 VLPs each, 41 tilts (+-60/3)."""
        return cls()

    @classmethod
    def tiny(cls) -> SynthConfig:
        """1 tilt series of 128x128x64 px at 10.8 Å/px, 1 VLP, 21 tilts (+-60/6), for tests."""
        return cls(
            n_tiltseries=1, tomogram_shape_zyx=(64, 128, 128), pixel_size_angstrom=10.8, n_vlps=1,
            vlp_radius_range_angstrom=(250.0, 270.0), lattice_offset_angstrom=-80.0, unit_box_px=16,
            n_fiducials=4, tilt_step_deg=6.0, dose_per_tilt_e_per_A2=5.9, shift_rms_px=2.0, margin_px=2,
        )  # fmt: skip

    @property
    def ice_thickness(self) -> float:
        """Ice thickness in Å (the default when ``ice_thickness_angstrom`` is None)."""
        if self.ice_thickness_angstrom is not None:
            return float(self.ice_thickness_angstrom)
        return 0.85 * self.tomogram_shape_zyx[0] * self.pixel_size_angstrom

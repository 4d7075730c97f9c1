"""Synthetic cryo-ET data with ground truth: VLP lattices, tilt series, truth files."""

from stasnake.synth.config import SynthConfig
from stasnake.synth.dataset import generate_dataset
from stasnake.synth.lattice import icosphere, sphere_lattice
from stasnake.synth.tiltseries import acquisition_order, simulate_tiltseries, tilt_angles
from stasnake.synth.unit import unit_map

__all__ = [
    "SynthConfig", "acquisition_order", "generate_dataset", "icosphere", "simulate_tiltseries",
    "sphere_lattice", "tilt_angles", "unit_map",
]  # fmt: skip

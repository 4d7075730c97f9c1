"""Rule average_tomogram: wedge-compensated average of the cropped particles of one tomogram, and its weight map."""

from stasnake.io.dynamo_table import read_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import accumulate_particles, finish_average, tilt_ranges_from_table
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.sta.transfer import load_particle_transfers
from stasnake.workflow import log, run_rule


def main(smk):
    particles, apix = read_mrc(smk.input.particles, mmap=True)
    table = read_table(smk.input.table)
    matrices, shifts = table_poses(table)
    ranges = tilt_ranges_from_table(table)
    transfers = load_particle_transfers(table, smk.input.transfers, smk.params.transfer_tomos, particles.shape[-1], apix,
                                        source=smk.input.table)  # fmt: skip
    sums = accumulate_particles(particles, matrices, shifts, ranges, device=smk.params.device, pixel_size_angstrom=apix,
                                transfers=transfers)  # fmt: skip
    average, weight = finish_average(
        sums, symmetry_order(smk.params.symmetry), smk.params.wedge_compensation, fmin_fraction=smk.params.fmin_fraction
    )
    log.info(
        "averaged %d particles (symmetry %s, wedge compensation %s, CTF weighting %s)",
        len(table),
        smk.params.symmetry,
        smk.params.wedge_compensation,
        transfers is not None,
    )
    write_mrc(smk.output.average, average, sums.pixel_size_angstrom)
    write_mrc(smk.output.weight, weight, 1.0)  # Fourier space: fftshifted, zero frequency at the box centre


run_rule(snakemake, main)  # noqa: F821

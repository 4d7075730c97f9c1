"""Rule export_relion: the final table as RELION 5 particles.star and tomograms.star."""

from stasnake.geometry.relion import relion_tomograms_table, table_to_relion_particles
from stasnake.io.dynamo_table import read_table
from stasnake.io.mrc import read_mrc_header
from stasnake.io.star import write_star
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    names = dict(zip(smk.params.tomo_numbers, smk.params.names, strict=True))
    headers = [read_mrc_header(p) for p in smk.input.tomograms]
    sizes = {name: h["shape"][::-1] for name, h in zip(smk.params.names, headers, strict=True)}
    paths = dict(zip(smk.params.names, smk.input.tomograms, strict=True))
    apix = headers[0]["pixel_size_angstrom"]
    blocks = table_to_relion_particles(table, names, apix, version=5, tomogram_sizes_xyz=sizes, half_sets=True)
    optics = smk.params.optics
    tomograms = relion_tomograms_table(
        sizes, apix, optics["voltage_kv"], optics["cs_mm"], optics["amplitude_contrast"], tomogram_paths=paths
    )
    write_star(smk.output.particles, blocks)
    write_star(smk.output.tomograms, {"global": tomograms})
    log.info("exported %d particles of %d tomograms", len(table), len(names))


run_rule(snakemake, main)  # noqa: F821

"""Rule sta_start: merge a project's particle tables, check its inputs, write iteration 0."""

import numpy as np

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.cmm import markers_to_pixels, read_cmm
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.io.particle_export import read_particle_stack
from stasnake.sta.average import average_particles, tilt_ranges_from_table
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.sta.project import ParticleStacks, check_mask, particle_index
from stasnake.sta.table_ops import merge_tables, randomize_azimuth, recentre
from stasnake.sta.tables import split_even_odd
from stasnake.workflow import log, run_rule


def main(smk):
    project = smk.params.project
    stacks = dict(zip(smk.params.tomograms, smk.input.particles, strict=True))
    tables = {ts: read_table(path) for ts, path in zip(smk.params.tomograms, smk.input.tables, strict=True)}
    boxes = {}
    for ts, path in stacks.items():
        particles, apix = read_particle_stack(path)
        boxes[ts] = (particles.shape[-1], apix)
        if len(particles) != len(tables[ts]):
            raise InputError(path, f"holds {len(particles)} boxes but its table has {len(tables[ts])} rows")
    sizes = {(b, round(a, 3)) for b, a in boxes.values()}
    if len(sizes) != 1:
        raise InputError(f"project {project.name}", f"particles of different box or pixel sizes: {boxes}")
    box, apix = next(iter(boxes.values()))
    for key in ("mask", "classification_mask"):  # checked here, before any long work
        path = getattr(smk.input, key, None)
        if path:
            check_mask(read_mrc(path)[0], box, path)
    index = particle_index(tables, stacks)
    if len(index) == 0:
        raise InputError(f"project {project.name}", f"no particles in {smk.input.tables}")
    # tags must be unique across tilt series; merging keeps each particle's even/odd half
    table = merge_tables(list(tables.values()), sources=list(smk.input.tables))
    index["tag"] = table["tag"].to_numpy()
    table["aligned_value"] = 1
    table["averaged_value"] = 1
    if project.recentre_marker:
        marker = markers_to_pixels(read_cmm(smk.input.marker), apix)
        if len(marker) != 1:
            raise InputError(smk.input.marker, f"holds {len(marker)} markers; the particle centre is one")
        table = recentre(table, marker[0], box, source=smk.input.marker)
        log.info("starting table re-centred on the marker at (%.1f, %.1f, %.1f) px (%s)", *marker[0],
                 smk.input.marker)  # fmt: skip
    if project.randomize_azimuth:
        table = randomize_azimuth(table, np.random.default_rng(0))
        log.info("randomised the azimuth (rotation about each particle's z axis) of %d particles", len(table))
    halves = {}
    if project.reference == "average":
        matrices, shifts = table_poses(table)
        tilt_ranges = tilt_ranges_from_table(table)
        sym = symmetry_order(project.starting_symmetry)
        reference = average_particles(ParticleStacks(index, index["row"]), matrices, shifts, tilt_ranges,
                                      symmetry=sym)  # fmt: skip
        log.info("starting reference: the average of %d particles (%s)", len(table), project.starting_symmetry)
        if project.gold_standard:  # each half starts from its own particles only
            for name, sel in zip(("half1", "half2"), split_even_odd(table), strict=True):
                if not sel.any():
                    raise InputError(f"project {project.name}", f"{name} (tag parity) has no particles")
                halves[name] = average_particles(ParticleStacks(index, index["row"].to_numpy()[sel]), matrices[sel],
                                                 shifts[sel], tilt_ranges[sel], symmetry=sym)  # fmt: skip
            log.info("gold standard: each half starts from the average of its own %d / %d particles",
                     *(int(s.sum()) for s in split_even_odd(table)))  # fmt: skip
    else:
        reference, _ = read_mrc(smk.input.reference)
        if reference.shape != (box,) * 3:
            raise InputError(smk.input.reference, f"reference of shape {reference.shape} for particles of box {box}")
        log.info("starting reference: %s", smk.input.reference)
    log.info("project %s: %d particles from %s, box %d px, %d iterations in %d rounds%s", project.name, len(table),
             ", ".join(project.tomograms), box, project.n_iterations, len(project.rounds),
             ", gold standard" if project.gold_standard else "")  # fmt: skip
    write_text_atomic(smk.output.index, index.to_csv(index=False))
    write_table(smk.output.table, table)
    write_mrc(smk.output.average, np.asarray(reference, dtype=np.float32), apix)
    for name in ("half1", "half2"):
        write_mrc(getattr(smk.output, name), np.asarray(halves.get(name, reference), dtype=np.float32), apix)


run_rule(snakemake, main)  # noqa: F821

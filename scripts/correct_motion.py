"""Rule correct_motion: gain-correct, align and sum each tilt's movie (all, even and odd frames)."""

from contextlib import ExitStack

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import atomic_output
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import MrcSlabWriter, read_mrc
from stasnake.tilt.importing import acquisition_parameters
from stasnake.tilt.motion import correct_movie
from stasnake.tilt.motion_plot import plot_drift
from stasnake.tilt.movie_files import find_movies, read_movie
from stasnake.workflow import log, run_rule


def main(smk):
    header, sections = read_mdoc(smk.input.mdoc)
    sections = sections.sort_values("ZValue").reset_index(drop=True)
    movies = find_movies(sections, smk.params.movies, smk.input.mdoc)
    pixel = acquisition_parameters(header, sections, smk.params.overrides, smk.input.mdoc)["pixel_size_angstrom"]
    p = smk.params.motion
    gain = read_mrc(smk.input.gain)[0] if smk.input.gain else None
    options = {k: p[k] for k in ("bfactor_angstrom2", "max_shift_px", "iterations", "smooth_sigma_frames")}
    frames = read_movie(movies[0])
    shape = (len(movies), *frames.shape[1:])
    rows = []
    with ExitStack() as outputs:  # all three stacks appear only if every movie succeeds
        writers = [outputs.enter_context(MrcSlabWriter(path, shape, pixel, stack=True))
                   for path in (smk.output.stack, smk.output.even, smk.output.odd)]  # fmt: skip
        for z, path in enumerate(movies):
            if z > 0:
                frames = read_movie(path)
            if frames.shape[1:] != shape[1:]:
                raise InputError(path, f"frames are {frames.shape[2]} x {frames.shape[1]} px, "
                                       f"the first movie's {shape[2]} x {shape[1]} px")  # fmt: skip
            result = correct_movie(frames, pixel, gain, p["gain_flip"], p["gain_rotate_quarter_turns"],
                                   gain_source=smk.input.gain or "gain reference", **options)  # fmt: skip
            for writer, key in zip(writers, ("sum", "even", "odd"), strict=True):
                writer.write_z_slab(z, result[key][None])
            shifts = result["shifts"]
            length = float(np.sum(np.hypot(*np.diff(shifts, axis=0).T))) if len(shifts) > 1 else 0.0
            log.info("tilt %d/%d (%+.1f deg) %s: %d frames, drift path %.2f px", z + 1, len(movies),
                     sections.TiltAngle[z], path.name, len(frames), length)  # fmt: skip
            rows.append(pd.DataFrame({"z_value": int(sections.ZValue[z]), "tilt_angle_deg": sections.TiltAngle[z],
                                      "movie": path.name, "frame": np.arange(len(shifts)),
                                      "dx_px": shifts[:, 0], "dy_px": shifts[:, 1]}))  # fmt: skip
    drift = pd.concat(rows, ignore_index=True)
    with atomic_output(smk.output.drift) as tmp:
        drift.to_csv(tmp, index=False, float_format="%.4f")
    plot_drift(smk.output.plot, drift, f"{smk.wildcards.ts}: whole-frame drift")


run_rule(snakemake, main)  # noqa: F821

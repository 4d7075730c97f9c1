"""The ``stasnake`` command: file conversions, summaries and synthetic data.

Every sub-command turns bad input into one line on stderr naming the file
and the problem, exits with status 2, and leaves no partial output file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stasnake import __version__
from stasnake.errors import InputError


def _short_list(items, n: int = 6) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:n])
    return text + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _tomogram_shape_xyz(path: Path) -> tuple[int, int, int]:
    """Size (x, y, z) in pixels of an MRC or EM tomogram, from its header."""
    if path.suffix.lower() == ".em":
        from stasnake.io.em import read_em_header

        shape = read_em_header(path)["shape"]
    else:
        from stasnake.io.mrc import read_mrc_header

        shape = read_mrc_header(path)["shape"]
    shape = tuple(int(s) for s in shape)
    shape = (1,) * (3 - len(shape)) + shape
    return shape[::-1]


def _tomogram_names(args, table) -> tuple[dict[int, str], dict[str, tuple[int, int, int]]]:
    """Tomo number -> name, and name -> size (x, y, z) where known."""
    from stasnake.io.dynamo_doc import read_doc
    from stasnake.validation.samples import load_samples

    names: dict[int, str] = {}
    paths: dict[str, Path] = {}
    if args.tomograms:
        src = Path(args.tomograms)
        if src.suffix.lower() == ".doc":
            for number, path in read_doc(src).items():
                name = Path(path.replace("\\", "/")).name.split(".")[0]
                names[number] = name
                # Dynamo paths are relative to where Dynamo ran; try there, then next to the .doc
                for candidate in (Path(path), src.parent / path):
                    if candidate.is_file():
                        paths[name] = candidate
                        break
        else:
            samples = load_samples(src, check_files=False)
            for name, row in samples.iterrows():
                names[int(row["tomo_number"])] = name
        unnamed = sorted(set(table["tomo"].astype(int)) - set(names))
        if unnamed:
            raise InputError(
                src, f"no entry for table tomo number(s) {_short_list(unnamed)} of {args.table}"
            )
    for number in sorted(set(table["tomo"].astype(int))):
        names.setdefault(number, f"tomo_{number:03d}")
    sizes: dict[str, tuple[int, int, int]] = {}
    for name, path in paths.items():
        sizes[name] = _tomogram_shape_xyz(path)
    if args.tomogram_size:
        for name in names.values():
            sizes.setdefault(name, tuple(args.tomogram_size))
    return names, sizes


def cmd_tbl2star(args) -> None:
    from stasnake.geometry.relion import table_to_relion_particles
    from stasnake.io.dynamo_table import read_table
    from stasnake.io.star import write_star

    if args.binning <= 0:
        raise InputError("--binning", f"must be positive, got {args.binning:g}")
    if args.pixel_size is not None and args.pixel_size <= 0:
        raise InputError("--pixel-size", f"must be positive, got {args.pixel_size:g}")
    table = read_table(args.table)
    if len(table) == 0:
        raise InputError(args.table, "the table has no particles")
    apix = args.pixel_size
    if apix is None:
        nonzero = table["apix"][table["apix"] > 0] if "apix" in table else []
        if len(nonzero) == 0:
            raise InputError(args.table, "the apix column is empty; give --pixel-size")
        apix = float(nonzero.iloc[0])
    # the table coordinates are binned by --binning; RELION wants the unbinned tilt-series pixel size
    tilt_series_apix = apix / args.binning
    names, sizes = _tomogram_names(args, table)
    if args.relion == 5:
        missing = sorted({names[t] for t in table["tomo"].astype(int)} - set(sizes))
        if missing:
            raise InputError(
                args.table,
                f"RELION 5 centred coordinates need the tomogram sizes, unknown for {_short_list(missing)}: "
                "give --tomogram-size X Y Z, a --tomograms .doc listing readable tomograms, or --relion 4",
            )
    blocks = table_to_relion_particles(
        table,
        names,
        tilt_series_apix,
        version=args.relion,
        tomogram_sizes_xyz=sizes,
        binning=args.binning,
    )
    write_star(args.out, blocks)
    print(
        f"{args.out}: {len(table)} particles, RELION {args.relion}, tilt-series pixel size {tilt_series_apix:g} Å"
    )


def cmd_star2tbl(args) -> None:
    from stasnake.geometry.relion import relion_particles_to_table
    from stasnake.io.dynamo_doc import write_doc
    from stasnake.io.dynamo_table import write_table
    from stasnake.io.star import read_relion_particles, read_relion_tomograms

    if args.pixel_size is not None and args.pixel_size <= 0:
        raise InputError("--pixel-size", f"must be positive, got {args.pixel_size:g}")
    optics, particles = read_relion_particles(args.star)
    pixel_col = "rlnTomoTiltSeriesPixelSize"
    if args.pixel_size is not None:
        particles = particles.assign(**{pixel_col: float(args.pixel_size)})
    centred = particles.attrs.get("coordinates") == "centered_angstrom"
    sizes = None
    if args.tomograms:
        tomos = read_relion_tomograms(args.tomograms)
        sizes = {
            str(row["rlnTomoName"]): (row["rlnTomoSizeX"], row["rlnTomoSizeY"], row["rlnTomoSizeZ"])
            for _, row in tomos.iterrows()
        }
        names = set(particles["rlnTomoName"].astype(str)) if "rlnTomoName" in particles else set()
        lacking = sorted(names - set(sizes))
        if centred and lacking:
            raise InputError(
                args.tomograms, f"no row for tomogram(s) {_short_list(lacking)} of {args.star}"
            )
    elif args.tomogram_size:
        names = particles["rlnTomoName"].astype(str).unique() if "rlnTomoName" in particles else []
        sizes = {name: tuple(args.tomogram_size) for name in names}
    elif centred:
        raise InputError(
            args.star,
            "RELION 5 centred coordinates (rlnCenteredCoordinate*Angst) need the tomogram sizes: "
            "give --tomograms tomograms.star or --tomogram-size X Y Z",
        )
    try:
        table, tomo_map = relion_particles_to_table(
            particles, optics, tomogram_sizes_xyz=sizes, source=str(args.star)
        )
    except InputError as exc:
        if pixel_col in exc.problem and args.pixel_size is None:
            raise InputError(exc.source, f"{exc.problem}; give --pixel-size") from None
        raise
    write_table(args.out, table)
    if args.doc:
        write_doc(args.doc, tomo_map)
    n_tomos = len(tomo_map)
    print(f"{args.out}: {len(table)} particles from {n_tomos} tomogram{'s' * (n_tomos != 1)}")


def cmd_info(args) -> None:
    from stasnake.io.summary import summarize

    for i, path in enumerate(args.files):
        if i:
            print()
        print(summarize(path))


def cmd_synth(args) -> None:
    import dataclasses

    from stasnake.synth import SynthConfig, generate_dataset

    if args.n_tiltseries is not None and args.n_tiltseries < 1:
        raise InputError("--n-tiltseries", f"must be at least 1, got {args.n_tiltseries}")
    if args.snr is not None and not args.snr > 0:
        raise InputError("--snr", f"must be positive, got {args.snr:g}")
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(outdir, "exists and is not a folder")
    config = SynthConfig.tiny() if args.preset == "tiny" else SynthConfig.demo()
    # SynthConfig is frozen: build a changed copy
    changes = {
        f: getattr(args, f) for f in ("seed", "n_tiltseries", "snr") if getattr(args, f) is not None
    }
    config = dataclasses.replace(config, **changes)
    manifest = generate_dataset(outdir, config)
    print(
        f"{outdir}: {len(manifest['tiltseries'])} tilt series, {manifest['n_particles']} particles "
        f"(seed {config.seed}); sample list {outdir / 'tomograms.tsv'}, ground truth in {outdir / 'truth'}"
    )


def cmd_demo(args) -> None:
    from stasnake.synth.demo_user import run_demo

    if not Path(args.dataset, "truth", "manifest.json").is_file():
        raise InputError(args.dataset, "is not a synthetic data set: run `stasnake synth demo` first")
    snakemake_args = ["--profile", args.profile, *args.snakemake_args]
    status = run_demo(args.dataset, ".", snakemake_args, seed=args.seed)
    if status != 0:
        raise SystemExit(status)


def cmd_prepare_view(args) -> None:
    from stasnake.annotations import prepare_view
    from stasnake.io.mrc import read_mrc, write_mrc

    if not args.lowpass_angstrom > 0:
        raise InputError("--lowpass-angstrom", f"must be positive, got {args.lowpass_angstrom:g}")
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise InputError("--pixel-size", f"must be positive, got {args.pixel_size:g}")
    if Path(args.out).resolve() == Path(args.map).resolve():
        raise InputError(args.out, "is the input map; give another output file")
    volume, apix = read_mrc(args.map)
    apix = args.pixel_size or apix
    if volume.ndim != 3:
        raise InputError(args.map, f"is not a 3-D map (shape {volume.shape})")
    if not apix > 0:
        raise InputError(args.map, "the header has no pixel size; give --pixel-size")
    write_mrc(args.out, prepare_view(volume, apix, args.lowpass_angstrom, invert=args.invert), apix)
    inverted = "inverted, " if args.invert else ""
    print(f"{args.out}: {inverted}low-pass {args.lowpass_angstrom:g} Å, pixel size {apix:g} Å")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stasnake", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stasnake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tbl2star", help="Dynamo table -> RELION particles star file")
    p.add_argument("table", help="Dynamo .tbl")
    p.add_argument("out", help="output .star")
    p.add_argument(
        "--pixel-size",
        type=float,
        help="Å per pixel of the table coordinates (default: table apix)",
    )
    p.add_argument(
        "--tomograms",
        help="Dynamo .doc (tomo number -> tomogram file) or stasnake sample list (.tsv)",
    )
    p.add_argument(
        "--tomogram-size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="unbinned tomogram size in pixels (RELION 5)",
    )
    p.add_argument(
        "--relion",
        type=int,
        choices=(4, 5),
        default=5,
        help="RELION version of the output (default 5)",
    )
    p.add_argument(
        "--binning",
        type=float,
        default=1.0,
        help="binning of the table coordinates relative to the tilt series",
    )
    p.set_defaults(func=cmd_tbl2star)

    p = sub.add_parser("star2tbl", help="RELION particles star file -> Dynamo table")
    p.add_argument("star", help="RELION particles .star (3.1, 4 or 5)")
    p.add_argument("out", help="output .tbl")
    p.add_argument("--doc", help="also write a Dynamo .doc mapping tomo numbers to tomogram names")
    p.add_argument("--tomograms", help="RELION 5 tomograms.star giving tomogram sizes")
    p.add_argument(
        "--tomogram-size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="tomogram size in pixels (RELION 5)",
    )
    p.add_argument(
        "--pixel-size", type=float,
        help="Å per pixel of the coordinates; overrides rlnTomoTiltSeriesPixelSize (needed for RELION 3.1 / Warp files)",
    )  # fmt: skip
    p.set_defaults(func=cmd_star2tbl)

    p = sub.add_parser("info", help="summary of mrc/em/tbl/star/mdoc/cmm/tlt/xf/defocus files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synth", help="write a synthetic tilt-series data set with ground truth")
    p.add_argument("outdir", help="output folder (e.g. demo)")
    p.add_argument(
        "--preset", choices=("demo", "tiny"), default="demo", help="size preset (default demo)"
    )
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--n-tiltseries", type=int, help="number of tilt series")
    p.add_argument("--snr", type=float, help="signal-to-noise ratio of the tilt images")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "demo",
        help="run the workflow on the synthetic demo, a simulated user writing the annotations it asks for",
    )
    p.add_argument("--dataset", default="demo", help="the synthetic data set (default demo)")
    p.add_argument("--profile", default="profiles/local", help="Snakemake profile (default profiles/local)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated click errors")
    p.add_argument("snakemake_args", nargs="*", help="further snakemake arguments (after --)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "prepare-view", help="filtered, contrast-inverted copy of a map for annotating (ChimeraX)"
    )
    p.add_argument("map", help="input MRC map (tomogram or average)")
    p.add_argument("out", help="output MRC viewing copy")
    p.add_argument(
        "--lowpass-angstrom", type=float, default=20.0, help="low-pass resolution in Å (default 20)"
    )
    p.add_argument(
        "--invert",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="invert the contrast so protein is bright (default: on)",
    )
    p.add_argument("--pixel-size", type=float, help="Å per pixel (default: from the MRC header)")
    p.set_defaults(func=cmd_prepare_view)
    return parser


def _fail(message: str) -> int:
    """Print ``message`` as one line on stderr; return the exit status 2."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"stasnake: error: {line}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Entry point of the ``stasnake`` command."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as exc:
        return _fail(str(exc))
    except OSError as exc:  # permissions, a folder where a file should go, a full disk...
        # os.replace(temporary, final) names the final output second
        where = exc.filename2 if exc.filename2 is not None else exc.filename
        return _fail(f"{where if where is not None else 'stasnake'}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("stasnake: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

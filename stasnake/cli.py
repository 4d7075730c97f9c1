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


def _tomogram_names(args, table) -> tuple[dict[int, str], dict[str, tuple[int, int, int]]]:
    """Tomo number -> name, and name -> size (x, y, z) where known."""
    from stasnake.io.dynamo_doc import read_doc
    from stasnake.io.mrc import read_mrc_header
    from stasnake.validation.samples import load_samples

    names: dict[int, str] = {}
    paths: dict[str, str] = {}
    if args.tomograms:
        src = Path(args.tomograms)
        if src.suffix == ".doc":
            for number, path in read_doc(src).items():
                name = Path(path).name.split(".")[0]
                names[number], paths[name] = name, path
        else:
            samples = load_samples(src, check_files=False)
            for name, row in samples.iterrows():
                names[int(row["tomo_number"])] = name
    for number in sorted(set(table["tomo"].astype(int))):
        names.setdefault(number, f"tomo_{number:03d}")
    sizes: dict[str, tuple[int, int, int]] = {}
    for name, path in paths.items():
        if Path(path).exists():
            sizes[name] = tuple(read_mrc_header(path)["shape"][::-1])
    if args.tomogram_size:
        for name in names.values():
            sizes.setdefault(name, tuple(args.tomogram_size))
    return names, sizes


def cmd_tbl2star(args) -> None:
    from stasnake.geometry.relion import table_to_relion_particles
    from stasnake.io.dynamo_table import read_table
    from stasnake.io.star import write_star

    table = read_table(args.table)
    apix = args.pixel_size
    if apix is None:
        nonzero = table["apix"][table["apix"] > 0] if "apix" in table else []
        if len(nonzero) == 0:
            raise InputError(args.table, "the apix column is empty; give --pixel-size")
        apix = float(nonzero.iloc[0])
    names, sizes = _tomogram_names(args, table)
    if args.relion == 5:
        missing = sorted({names[t] for t in table["tomo"].astype(int)} - set(sizes))
        if missing:
            raise InputError(
                args.table,
                f"RELION 5 centred coordinates need tomogram sizes, unknown for {missing}: give "
                "--tomogram-size X Y Z, a --tomograms .doc listing readable tomograms, or --relion 4",
            )
    blocks = table_to_relion_particles(table, names, apix, version=args.relion, tomogram_sizes_xyz=sizes, binning=args.binning)
    write_star(args.out, blocks)
    print(f"{args.out}: {len(table)} particles, RELION {args.relion}, {apix:g} Å/px")


def cmd_star2tbl(args) -> None:
    from stasnake.geometry.relion import relion_particles_to_table
    from stasnake.io.dynamo_doc import write_doc
    from stasnake.io.dynamo_table import write_table
    from stasnake.io.star import read_relion_particles, read_relion_tomograms

    optics, particles = read_relion_particles(args.star)
    sizes = None
    if args.tomograms:
        tomos = read_relion_tomograms(args.tomograms)
        sizes = {
            row["rlnTomoName"]: (row["rlnTomoSizeX"], row["rlnTomoSizeY"], row["rlnTomoSizeZ"])
            for _, row in tomos.iterrows()
        }
    elif args.tomogram_size:
        names = particles["rlnTomoName"].unique() if "rlnTomoName" in particles else []
        sizes = {name: tuple(args.tomogram_size) for name in names}
    table, tomo_map = relion_particles_to_table(particles, optics, tomogram_sizes_xyz=sizes)
    write_table(args.out, table)
    if args.doc:
        write_doc(args.doc, tomo_map)
    print(f"{args.out}: {len(table)} particles from {len(tomo_map)} tomograms")


def cmd_info(args) -> None:
    from stasnake.io.summary import summarize

    for i, path in enumerate(args.files):
        if i:
            print()
        print(summarize(path))


def cmd_synth(args) -> None:
    from stasnake.synth import SynthConfig, generate_dataset

    config = SynthConfig.tiny() if args.preset == "tiny" else SynthConfig.demo()
    for field in ("seed", "n_tiltseries", "snr"):
        value = getattr(args, field)
        if value is not None:
            setattr(config, field, value)
    manifest = generate_dataset(args.outdir, config)
    print(f"{args.outdir}: {manifest.get('summary', 'synthetic data set written')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stasnake", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stasnake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tbl2star", help="Dynamo table -> RELION particles star file")
    p.add_argument("table", help="Dynamo .tbl")
    p.add_argument("out", help="output .star")
    p.add_argument("--pixel-size", type=float, help="Å per pixel of the table coordinates (default: table apix)")
    p.add_argument("--tomograms", help="Dynamo .doc (tomo number -> tomogram file) or stasnake sample list (.tsv)")
    p.add_argument("--tomogram-size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="tomogram size in pixels (RELION 5)")
    p.add_argument("--relion", type=int, choices=(4, 5), default=5, help="RELION version of the output (default 5)")
    p.add_argument("--binning", type=float, default=1.0, help="binning of the table coordinates relative to the tilt series")
    p.set_defaults(func=cmd_tbl2star)

    p = sub.add_parser("star2tbl", help="RELION particles star file -> Dynamo table")
    p.add_argument("star", help="RELION particles .star (3.1, 4 or 5)")
    p.add_argument("out", help="output .tbl")
    p.add_argument("--doc", help="also write a Dynamo .doc mapping tomo numbers to tomogram names")
    p.add_argument("--tomograms", help="RELION 5 tomograms.star giving tomogram sizes")
    p.add_argument("--tomogram-size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="tomogram size in pixels (RELION 5)")
    p.set_defaults(func=cmd_star2tbl)

    p = sub.add_parser("info", help="summary of mrc/em/tbl/star/mdoc/cmm/tlt/xf/defocus files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synth", help="write a synthetic tilt-series data set with ground truth")
    p.add_argument("outdir", help="output folder (e.g. demo)")
    p.add_argument("--preset", choices=("demo", "tiny"), default="demo", help="size preset (default demo)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--n-tiltseries", type=int, help="number of tilt series")
    p.add_argument("--snr", type=float, help="signal-to-noise ratio of the tilt images")
    p.set_defaults(func=cmd_synth)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``stasnake`` command."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as exc:
        print(f"stasnake: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stasnake: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

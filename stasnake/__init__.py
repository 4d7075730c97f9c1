"""stasnake: cryo-ET tilt series to subtomogram averages.

The package holds the numerics and file formats behind the Snakemake workflow
in this repository. Conventions (units, axis order, Euler angles, origins) are
fixed once in ``docs/conventions.md``.
"""

__version__ = "0.1.0"

"""stasnake.sta: subtomogram averaging numerics.

Modules: ``crop`` (cut boxes at table positions), ``rotate`` (bring particles
into the reference frame), ``average`` (known-pose averaging, Cn symmetry) and
``fsc`` (Fourier shell correlation, resolution, masks, plots). Imported
lazily by their users so that numba kernels compile only when needed.
"""

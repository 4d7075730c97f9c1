"""Particle picking on VLPs: dipole annotations, surface oversampling, autopilot VLP detection.

* :mod:`stasnake.picking.dipoles`: the ``annotations/{ts}/dipoles.csv`` format.
* :mod:`stasnake.picking.oversample`: crop points normal to the VLP surfaces (Dynamo table).
* :mod:`stasnake.picking.detect_vlps`: propose dipoles from a binned tomogram.
"""

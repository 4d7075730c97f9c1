"""stasnake.kernels."""

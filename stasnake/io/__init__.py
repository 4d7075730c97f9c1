"""stasnake.io."""

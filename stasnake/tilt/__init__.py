"""stasnake.tilt."""

"""stasnake.geometry."""

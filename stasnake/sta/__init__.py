"""stasnake.sta."""

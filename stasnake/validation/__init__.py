"""stasnake.validation."""

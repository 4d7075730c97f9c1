"""stasnake.synth."""

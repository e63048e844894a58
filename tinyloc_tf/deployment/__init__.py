"""deployment stage."""

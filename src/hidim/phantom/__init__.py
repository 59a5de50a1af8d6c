"""hidim.phantom — see docs/architecture.md."""

"""hidim.store — see docs/architecture.md."""

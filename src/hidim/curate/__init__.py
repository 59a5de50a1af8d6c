"""hidim.curate — see docs/architecture.md."""

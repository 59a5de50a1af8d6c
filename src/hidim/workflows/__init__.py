"""hidim.workflows — see docs/architecture.md."""

"""hidim.report — see docs/architecture.md."""

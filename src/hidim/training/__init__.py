"""hidim.training — see docs/architecture.md."""

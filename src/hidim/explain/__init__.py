"""hidim.explain — see docs/architecture.md."""

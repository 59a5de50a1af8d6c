"""hidim.evaluate — see docs/architecture.md."""

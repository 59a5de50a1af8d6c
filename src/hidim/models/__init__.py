"""hidim.models — see docs/architecture.md."""

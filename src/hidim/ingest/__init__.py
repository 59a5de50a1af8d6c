"""hidim.ingest — see docs/architecture.md."""

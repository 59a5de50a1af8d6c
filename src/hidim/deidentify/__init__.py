"""hidim.deidentify — see docs/architecture.md."""

"""The runner: one subprocess serving one model over localhost HTTP (see docs/runner-protocol.md)."""

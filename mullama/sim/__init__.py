"""`mullama sim`: the server's own policies on a calibrated cost model, at any scale (docs/research.md)."""

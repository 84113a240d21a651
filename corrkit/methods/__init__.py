"""One module per method; each takes a bundle, directions and a seed and returns a result."""

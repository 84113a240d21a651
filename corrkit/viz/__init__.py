"""Presentation: plots from arrays, image grids, run folders to figures, the HTML report, terminal tables."""

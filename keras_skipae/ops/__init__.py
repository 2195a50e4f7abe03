"""Primitives shared by the rest of the package (TF ops only)."""

"""Code shared by two or more services."""

"""Paperwire: trending research papers in your inbox, ranked for each subscriber."""

"""Search spaces (space.py, composed from each compression step's knobs) and the Strategy they produce."""

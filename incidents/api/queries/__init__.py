"""Read queries, kept out of the route functions."""

"""Read queries, kept out of the route functions: one module per capability.

Each function takes the session first and everything else by keyword, and returns rows or
small records; turning them into response bodies is the route's job.
"""

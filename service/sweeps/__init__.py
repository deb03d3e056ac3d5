"""Sweeps: grids of /evaluate cells kept in a database, claimed and run by any replica.

No HTTP and no torch here: the API hands the runner a function that evaluates one cell.
"""

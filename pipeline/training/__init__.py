"""Trained networks outside the engine: what decides one and where it lives, training one as a
job, and training what a run is missing.
"""

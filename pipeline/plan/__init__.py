"""From a manifest to work: the photos, their outputs and keys, what each method needs, and
batches (no torch).
"""

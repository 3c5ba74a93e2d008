"""What a user writes and the rules that check it: settings, manifests, presets, names, and the
sizes and weights they imply (no torch).
"""

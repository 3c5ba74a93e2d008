"""The shipped style presets.

This folder is installed as the package ``pipeline._builtin_styles`` (see
pyproject.toml) so that a regular, non-editable install still finds them.
"""

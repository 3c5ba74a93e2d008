"""stylize: neural style transfer (Gatys et al.) for photos and whole photo collections."""

__version__ = "0.1.0"

#: The name on PyPI ("stylize" and "pipeline" belong to other projects); the command stays
#: ``stylize`` and the package ``pipeline``.  Install hints name it with its extras.
DISTRIBUTION = "stylize-photos"

"""stylize: neural style transfer (Gatys et al.) for photos and whole photo collections."""

__version__ = "0.1.0"

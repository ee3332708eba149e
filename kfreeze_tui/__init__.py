"""kfreeze: choose what to freeze and what to train when fine-tuning a Keras model.

Importing this package is cheap on purpose: neither Keras, TensorFlow nor Textual is
imported here, so that the command line and the app can draw something before the
heavy imports finish.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

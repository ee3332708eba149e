"""Custom classes shared by the legacy files (built with ``tf_keras``) and kfreeze (Keras 3).

Each factory takes the Keras module to build against, so the same definition serves the
Keras 2 side that writes the files and the Keras 3 side that reads them.
"""

from __future__ import annotations

from typing import Any


def make_custom_layer_class(keras: Any) -> type:
    class Scale(keras.layers.Layer):
        """Multiplies by one learned scale per feature."""

        def build(self, input_shape: Any) -> None:
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs: Any) -> Any:
            return inputs * self.scale

    return Scale


def make_custom_model_class(keras: Any) -> type:
    class TransferModel(keras.Model):
        """A functional model of a class of its own (a custom *model* class)."""

    return TransferModel


def make_subclassed_class(keras: Any) -> type:
    class CIFAR10Model(keras.Model):
        """A subclassed model: its architecture lives only in this code."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(4)
            self.out = keras.layers.Dense(2)

        def call(self, inputs: Any) -> Any:
            return self.out(self.hidden(inputs))

    return CIFAR10Model

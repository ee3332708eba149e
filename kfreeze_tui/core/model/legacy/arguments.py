"""The arguments of a legacy layer config that Keras 3 no longer takes: dropped by rule, or
refused by name.

The rule: an argument Keras 3's class does not take is dropped when it holds Keras 2's neutral
default (which is what Keras 3 computes), and refused by name otherwise; the same holds in the
initializer, regularizer and constraint configs inside a layer, and in the arguments Keras 2
recorded for each call of a layer. What Keras 3 takes is read from its classes' signatures.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from kfreeze_tui.core.errors import LegacyError
from kfreeze_tui.core.model.legacy.entries import INNER_LAYER_KEYS
from kfreeze_tui.core.model.legacy.ops import OP_CLASSES
from kfreeze_tui.core.model.legacy.repairs import RepairLog

#: Arguments that Keras 3's classes no longer take, with the default Keras 2 gave them (read
#: from tf_keras's and tf.compat.v1's signatures; a test checks both facts). Dropped where Keras 3
#: refuses them and the value is that default, which is what Keras 3 computes; any other value
#: is refused by name. Layers, and the initializer, regularizer and constraint configs inside
#: them (Keras 2.2's initializers carried ``dtype``).
NEUTRAL_ARGUMENTS: dict[str, Any] = {
    "groups": 1,
    "time_major": False,
    "noise_shape": None,
    "fused": None,
    "virtual_batch_size": None,
    "adjustment": None,
    "dynamic": False,
    "conv_op": None,
    "force_generator": False,
    "rng_type": None,
    "robust_masking": False,
    "softmax_robust_masking": False,
    "sparse": False,
    "dtype": "float32",
    "trainable": True,
}
#: What Keras 3's Layer takes out of ``**kwargs`` (not named in its signature).
LAYER_KWARGS = frozenset({"input_shape", "input_dim"})
#: The Keras 3 modules where the class of an object inside a layer config is looked up.
OBJECT_MODULES = ("initializers", "regularizers", "constraints")
#: Arguments Keras 2 stored for some layers but never used (its SeparableConv kept the plain
#: convolution's kernel settings; its kernels are the depthwise and pointwise ones).
UNUSED_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "SeparableConv1D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
    "SeparableConv2D": ("kernel_initializer", "kernel_regularizer", "kernel_constraint"),
}


class LayerArguments:
    """Repairs the arguments of layer configs against the Keras 3 classes that take them."""

    def __init__(self, keras: ModuleType, custom: dict[str, Any], log: RepairLog) -> None:
        self.keras = keras
        self.custom = custom
        self.log = log
        self._accepts: dict[str, set[str] | None] = {}

    def accepts(self, class_name: str, module: str = "layers") -> set[str] | None:
        """The arguments a Keras 3 class takes (None: unknown): those its constructor names,
        and those of the constructors it hands ``**kwargs`` on to."""
        key = f"{module}.{class_name}"
        if key not in self._accepts:
            cls = self.custom.get(class_name) or getattr(
                getattr(self.keras, module), class_name, None
            )
            self._accepts[key] = self._constructor_arguments(cls) if isinstance(cls, type) else None
        return self._accepts[key]

    def _constructor_arguments(self, cls: type) -> set[str]:
        accepted: set[str] = set()
        for base in cls.__mro__:
            if "__init__" not in vars(base):
                continue
            parameters = inspect.signature(base.__init__).parameters.values()
            variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            accepted |= {p.name for p in parameters if p.kind not in variadic}
            if base is self.keras.layers.Layer:
                accepted |= LAYER_KWARGS  # what it takes out of **kwargs
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
                break
        return accepted

    def repair(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """Drop from a layer config what Keras 3's class does not take and Keras 2 stored at
        its neutral value: arguments, input shapes, unused kernel settings, and the same
        inside its initializer, regularizer and constraint configs.

        Raises:
            LegacyError: an argument Keras 3 does not take, at a value that is not neutral.
        """
        accepted = self.accepts(class_name)
        if accepted is None or class_name in self.custom:
            return
        self._neutral(
            config, accepted, class_name, layer_name, f"layer {layer_name} ({class_name})"
        )
        self._call_shapes(class_name, layer_name, config, accepted)
        self._unused(class_name, layer_name, config, accepted)
        self._objects(class_name, layer_name, config)

    def _call_shapes(
        self, class_name: str, layer_name: str, config: dict[str, Any], accepted: set[str]
    ) -> None:
        shapes = [
            key
            for key, value in config.items()
            if key.endswith("_shape")
            and key not in accepted
            and key not in NEUTRAL_ARGUMENTS
            and key != "batch_input_shape"
            and (value is None or _is_shape(value))
        ]
        for key in shapes:
            del config[key]
        if shapes:
            self.log.add(
                "call_shapes",
                "dropped the input shapes Keras 2 stored in {what} (Keras 3 takes them from "
                "the call)",
                class_name,
                layer_name,
            )

    def _unused(
        self, class_name: str, layer_name: str, config: dict[str, Any], accepted: set[str]
    ) -> None:
        unused = [
            name
            for name in UNUSED_ARGUMENTS.get(class_name, ())
            if name in config and name not in accepted
        ]
        for name in unused:
            del config[name]
        if unused:
            self.log.add(
                "unused_arguments",
                "dropped the kernel_* arguments Keras 2 stored but never used from {what}",
                class_name,
                layer_name,
            )

    def _objects(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """The initializer, regularizer and constraint configs inside a layer config."""
        for key, value in config.items():
            if key in INNER_LAYER_KEYS or not isinstance(value, dict):
                continue
            inner_class = value.get("class_name")
            inner = value.get("config")
            if not isinstance(inner_class, str) or not isinstance(inner, dict):
                continue
            for module in OBJECT_MODULES:
                inner_accepted = self.accepts(inner_class, module)
                if inner_accepted is not None:
                    self._neutral(
                        inner,
                        inner_accepted,
                        class_name,
                        layer_name,
                        f"the {key} of layer {layer_name} ({class_name})",
                        nested=inner_class,
                    )
                    break

    def _neutral(
        self,
        config: dict[str, Any],
        accepted: set[str],
        class_name: str,
        layer_name: str,
        where: str,
        nested: str = "",
    ) -> None:
        """Drop the arguments Keras 3 no longer takes that hold Keras 2's default; refuse the
        others by name."""
        for argument, neutral in NEUTRAL_ARGUMENTS.items():
            if argument not in config or argument in accepted:
                continue
            value = config[argument]
            if value != neutral:
                owner = nested or class_name
                raise LegacyError(
                    f"{where} has {argument}={value!r}, which Keras 3's {owner} does not take "
                    f"(only Keras 2's default, {argument}={neutral!r}, can be left out without "
                    "changing what the model computes)",
                    "rebuild that layer in Keras 3 code (for time_major, transpose the input "
                    "instead), load the weights into it, and save it with model.save()",
                    kind="repair",
                )
            del config[argument]
            if nested:
                self.log.add(
                    f"{argument}_in_objects",
                    f"dropped {argument}={neutral!r} from the initializer, regularizer and "
                    "constraint configs of {what}",
                    class_name,
                    layer_name,
                )
            else:
                self.log.add(
                    argument,
                    f"dropped {argument}={neutral!r} from {{what}}",
                    class_name,
                    layer_name,
                )

    def dtype_policy(self, class_name: str, layer_name: str, config: dict[str, Any]) -> None:
        """Keras 2's ``Policy`` objects, read as the name of the policy Keras 3 takes."""
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
            policy = (dtype.get("config") or {}).get("name")
            if isinstance(policy, str):
                config["dtype"] = policy
                self.log.add(
                    "dtype_policy",
                    "read Keras 2 dtype policies (Policy) as Keras 3 DTypePolicy on {what}",
                    class_name,
                    layer_name,
                )

    def call_arguments(self, kwargs: dict[str, Any], class_name: str, layer_name: str) -> bool:
        """Keras 2 recorded every argument of a layer's call, given or not; one that Keras 3's
        ``call`` does not take is dropped when it is None (not given), refused otherwise.

        Returns:
            whether an argument was dropped.
        """
        cls = self.custom.get(class_name) or getattr(self.keras.layers, class_name, None)
        if not isinstance(cls, type) or class_name in OP_CLASSES:
            return False
        parameters = inspect.signature(cls.call).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
        dropped = False
        # Keras 3 itself passes `training` only to a call that takes it.
        for argument in [key for key in kwargs if key not in parameters and key != "training"]:
            if kwargs[argument] is not None:
                raise LegacyError(
                    f"layer {layer_name} ({class_name}) is called with {argument}, which "
                    f"Keras 3's {class_name} does not take",
                    "rebuild that layer in Keras 3 code, load the weights into it, and save "
                    "it with model.save()",
                    kind="repair",
                )
            del kwargs[argument]
            dropped = True
        return dropped

    def is_recurrent(self, class_name: str) -> bool:
        """An RNN or Bidirectional class (whose Keras 2 nodes packed ``initial_state``)."""
        cls = self.custom.get(class_name) or getattr(self.keras.layers, class_name, None)
        return isinstance(cls, type) and issubclass(
            cls, (self.keras.layers.RNN, self.keras.layers.Bidirectional)
        )


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(d is None or isinstance(d, int) for d in value)

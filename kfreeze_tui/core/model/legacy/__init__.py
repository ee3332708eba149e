"""Model files written before Keras 3: read, repaired into Keras 3 configs, and refused clearly.

Keras 3 refuses most files that Keras 2 and tf.keras wrote, for mechanical reasons: arguments
it no longer takes, at Keras 2's default (``groups=1`` on DepthwiseConv2D, ``time_major=False``
on LSTM, ``noise_shape=None`` on SpatialDropout2D, ``dtype='float32'`` in Keras 2.2's
initializer configs), older names (``batch_input_shape``, class ``Model``), older layouts (nested
models numbered from 1, a Sequential config that is a bare list, one-element input and output
lists, HDF5 inside a file named ``.keras``, the tf.keras 2.13-2.15 ``.keras`` archive), older
nodes (tensors among a call's arguments, ``initial_state`` packed into an RNN's inputs), and
tf.keras's op layers (``TFOpLambda``, rebuilt as ``keras.ops`` calls), and Keras 2's
``hard_sigmoid`` (clip(0.2x + 0.5, 0, 1); Keras 3's is clip(x/6 + 0.5, 0, 1)), kept exactly by
scaling by 1.2 the loaded weights that make its input (the gate columns of an LSTM or GRU, a
Dense's kernel and bias). The stored config is read without running anything from the file,
named repairs are applied (each one reported, never silent), the model is built with Keras 3's
public API and the weights are loaded: from HDF5 by layer name, from an archive by the
archive's own paths.

A change that would alter what the model computes is not a repair: it is refused with a
sentence (``time_major=True``, ``groups=4`` where Keras 3 has no groups, ``hard_sigmoid`` where
no weights of its layer make its input, as in an ``Activation`` layer, ``tf.shape``, which a
Keras 3 model has no operation for), as is what cannot be opened safely (a Lambda whose code
another Python version marshalled, a subclassed model whose architecture is not in the file).

In the order a file goes through them:

- :mod:`.checks`: what kind of file it is, and what is refused before anything is built;
- :mod:`.upgrade`: ``repair_config``, the walk over models and layers, which uses
  :mod:`.arguments` (arguments Keras 3 no longer takes), :mod:`.hard_sigmoid` (the activation
  Keras 3 changed) and :mod:`.nodes` (the wiring); each change is a :class:`.repairs.Repair`;
- :mod:`.graph`: the Keras 3 model built from the repaired config (op layers through
  :mod:`.ops`);
- :mod:`.weights`: the weights loaded, then :func:`.hard_sigmoid.keep_hard_sigmoid`.

:mod:`.entries` holds what a stored config is made of (layer entries, nodes), read by all.
Only public Keras API is used: ``keras.saving.deserialize_keras_object``, ``Model.load_weights``
for archives and ``Variable.assign`` for HDF5 weights (and for the weights scaled for
``hard_sigmoid``).
"""

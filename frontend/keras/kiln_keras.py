"""Write a Keras model's graph for `kiln lint`, with the layers Keras left out of it.

keras.Model(inputs, outputs) keeps only the layers on a path from the inputs to the outputs.
A Rescaling or an augmentation block applied to the input whose output no later layer reads
(the first Conv2D built on `inputs` instead of `x`) is therefore in neither model.layers,
model.summary() nor the saved .keras file, and nothing tells that raw pixels reach the first
convolution. save_graph() writes model.to_json() plus every layer that was applied to a
tensor of the model but is not in it, each placed after the layers it reads and marked
"unused": true, so that `kiln lint FILE.json` reports it as an unused node, with the layer
that most likely meant to read it:

    import kiln_keras                      # frontend/keras/ on sys.path
    model = make_model(...)
    kiln_keras.save_graph(model, "model.json")
    # shell: kiln lint model.json

The layers applied to a model's tensors are found through Keras 3's graph links
(KerasTensor._keras_history, Operation._outbound_nodes), which are not public API: checked
with Keras 3.15.
"""

import json

import keras

__all__ = ["save_graph", "unused_layers"]


def _tensor(t):
    op, node_index, tensor_index = t._keras_history
    return {
        "class_name": "__keras_tensor__",
        "config": {
            "shape": list(t.shape),
            "dtype": str(t.dtype),
            "keras_history": [op.name, node_index, tensor_index],
        },
    }


def unused_layers(model):
    """The calls (Keras Nodes) of layers applied to the model's tensors, directly or through
    other such layers, whose layer is not in model.layers; in the order they are reached."""
    known = {layer.name for layer in model.layers}
    found, frontier = [], list(model.layers)
    while frontier:
        op = frontier.pop(0)
        for node in getattr(op, "_outbound_nodes", []):
            layer = node.operation
            reads = [t._keras_history.operation.name for t in node.arguments.keras_tensors]
            # A call that also reads tensors of another graph is not this model's.
            if layer.name in known or not all(name in known for name in reads):
                continue
            known.add(layer.name)
            found.append(node)
            frontier.append(layer)
    return found


def save_graph(model, path):
    """Writes model.to_json() with the unused layers added (see the module doc) to path;
    returns the names of the layers added."""
    config = json.loads(model.to_json())
    layers = config["config"]["layers"]
    added = []
    for node in unused_layers(model):
        layer = node.operation
        entry = keras.saving.serialize_keras_object(layer)
        entry["name"] = layer.name
        refs = [_tensor(t) for t in node.arguments.keras_tensors]
        entry["inbound_nodes"] = [{"args": refs if len(refs) == 1 else [refs], "kwargs": {}}]
        entry["unused"] = True
        reads = {t._keras_history.operation.name for t in node.arguments.keras_tensors}
        at = max(i for i, e in enumerate(layers) if e["name"] in reads) + 1
        layers.insert(at, entry)
        added.append(layer.name)
    with open(path, "w") as f:
        json.dump(config, f, default=str)
    return added

"""Wirings: structure, seeding, config round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lnn_control.nn import NCP, AutoNCP, FullyConnected, Random, Wiring


def all_wirings() -> list[Wiring]:
    return [
        FullyConnected(8, 3, seed=4).build(5),
        FullyConnected(8, self_connections=False).build(5),
        Random(10, 2, sparsity_level=0.6, seed=7).build(5),
        NCP(
            6, 5, 3, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=4, motor_fanin=2, seed=3
        ).build(5),
        AutoNCP(20, 4, sparsity_level=0.7, seed=9).build(5),
        Wiring(4, 2, adjacency=np.eye(4, dtype=np.int8)).build(3),
    ]


@pytest.mark.parametrize("wiring", all_wirings(), ids=lambda w: type(w).__name__)
def test_config_round_trip_is_exact_and_json_serialisable(wiring):
    config = json.loads(json.dumps(wiring.get_config()))
    restored = Wiring.from_config(config)
    assert type(restored) is type(wiring)
    assert restored.get_config() == wiring.get_config()
    np.testing.assert_array_equal(restored.adjacency, wiring.adjacency)
    np.testing.assert_array_equal(restored.sensory_adjacency, wiring.sensory_adjacency)
    assert restored.layers == wiring.layers


@pytest.mark.parametrize(
    "factory",
    [
        lambda seed: FullyConnected(8, seed=seed),
        lambda seed: Random(10, sparsity_level=0.5, seed=seed),
        lambda seed: AutoNCP(20, 4, seed=seed),
    ],
)
def test_wirings_are_reproducible_by_seed(factory):
    a, b, c = factory(1).build(5), factory(1).build(5), factory(2).build(5)
    np.testing.assert_array_equal(a.adjacency, b.adjacency)
    np.testing.assert_array_equal(a.sensory_adjacency, b.sensory_adjacency)
    assert not np.array_equal(a.adjacency, c.adjacency) or not np.array_equal(
        a.sensory_adjacency, c.sensory_adjacency
    )


def test_random_sparsity_level_is_respected():
    wiring = Random(20, sparsity_level=0.75, seed=0).build(8)
    assert wiring.synapse_count == 100
    assert wiring.sensory_synapse_count == 40


def test_ncp_layers_connect_only_forward_and_every_neuron_is_reachable():
    wiring = AutoNCP(32, 6, sparsity_level=0.5, seed=0).build(7)
    inter, command, motor = wiring.layers
    assert motor == list(range(6))
    assert wiring.output_dim == 6
    layer_of = {n: i for i, layer in enumerate(wiring.layers) for n in layer}
    for src, dest in zip(*np.nonzero(wiring.adjacency), strict=True):
        step = layer_of[int(dest)] - layer_of[int(src)]
        assert step == 1 or (step == 0 and layer_of[int(src)] == 1), (src, dest)
    # Every inter neuron has a sensory input, every command and motor neuron a synaptic input.
    assert (np.abs(wiring.sensory_adjacency[:, inter]).sum(0) > 0).all()
    assert (np.abs(wiring.adjacency[:, command + motor]).sum(0) > 0).all()
    # Every command neuron feeds some motor neuron.
    assert (np.abs(wiring.adjacency[np.ix_(command, motor)]).sum(1) > 0).all()
    assert set(np.unique(wiring.adjacency)) <= {-1, 0, 1}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: AutoNCP(10, 9), "output_size"),
        (lambda: AutoNCP(10, 3, sparsity_level=0.95), "sparsity_level"),
        (lambda: Random(5, sparsity_level=1.0), "sparsity_level"),
        (
            lambda: NCP(
                4, 3, 2, sensory_fanout=5, inter_fanout=1, recurrent_command_synapses=1, motor_fanin=1
            ),
            "sensory_fanout",
        ),
        (lambda: FullyConnected(0), "units"),
        (lambda: FullyConnected(4, output_dim=5), "output_dim"),
        (lambda: Wiring(3, adjacency=np.full((3, 3), 2)), "polarity"),
        (lambda: FullyConnected(4).build(3).build(4), "already built"),
        (lambda: Wiring.from_config({"class": "Spiral", "units": 3}), "unknown wiring class"),
    ],
)
def test_bad_wiring_arguments_raise_clear_errors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()

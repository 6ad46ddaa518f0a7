"""Wirings: which neuron feeds which, and with what polarity.

A wiring is a synapse graph over ``units`` neurons plus ``input_dim`` sensory inputs:

- ``adjacency`` (units, units), int8 in {-1, 0, +1}: ``adjacency[i, j]`` is the polarity of the synapse from
  neuron i to neuron j (0: no synapse). Polarity initialises the LTC reversal potentials.
- ``sensory_adjacency`` (input_dim, units): the same for input feature i to neuron j (made by ``build``).
- motor neurons are neurons ``0 .. output_dim - 1``; they are the network's outputs.
- ``layers``: neuron ids per processing layer, in order (NCP: inter, command, motor). A CfC with a wiring
  runs one sparse CfC block per layer; synapses must go from a layer to itself or to the next one.

Every wiring is seedable and round-trips through ``get_config()`` / ``Wiring.from_config()``. The config
records the built adjacency matrices, so a restored wiring is identical even across library versions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lnn_control.checks import positive_int

__all__ = ["NCP", "AutoNCP", "FullyConnected", "Random", "Wiring"]


class Wiring:
    """A synapse graph given by explicit matrices (the base class of the generated wirings).

    Args:
        units: number of neurons.
        output_dim: number of motor neurons (the first ``output_dim`` neuron ids); default ``units``.
        adjacency: (units, units) polarities in {-1, 0, 1}; default no synapses.
        sensory_adjacency: (input_dim, units) polarities; default none until ``build``.
        layers: neuron ids per layer; default one layer of all neurons.
    """

    _registry: ClassVar[dict[str, type[Wiring]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Wiring._registry[cls.__name__] = cls

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        *,
        adjacency: np.ndarray | None = None,
        sensory_adjacency: np.ndarray | None = None,
        layers: list[list[int]] | None = None,
    ) -> None:
        units = positive_int("units", units)
        output_dim = units if output_dim is None else positive_int("output_dim", output_dim)
        if output_dim > units:
            raise ValueError(f"output_dim must be <= units ({units}), got {output_dim}")
        self.units = units
        self.output_dim = output_dim
        self.adjacency = np.zeros((units, units), dtype=np.int8)
        self.sensory_adjacency: np.ndarray | None = None
        self.layers = [list(range(units))] if layers is None else [list(map(int, layer)) for layer in layers]
        self._check_layers()
        if adjacency is not None:
            self.adjacency = _polarity_matrix("adjacency", adjacency, (units, units))
        if sensory_adjacency is not None:
            sensory_adjacency = np.asarray(sensory_adjacency)
            if sensory_adjacency.ndim != 2:
                raise ValueError(
                    f"sensory_adjacency must be 2-D (input_dim, {units}), got shape {sensory_adjacency.shape}"
                )
            self.sensory_adjacency = _polarity_matrix(
                "sensory_adjacency", sensory_adjacency, (sensory_adjacency.shape[0], units)
            )

    # ----------------------------------------------------------------------------------------------- build
    @property
    def input_dim(self) -> int | None:
        """Number of sensory inputs, or None before ``build``."""
        return None if self.sensory_adjacency is None else int(self.sensory_adjacency.shape[0])

    def is_built(self) -> bool:
        return self.sensory_adjacency is not None

    def build(self, input_dim: int) -> Wiring:
        """Create the sensory synapses for ``input_dim`` inputs (idempotent for the same size)."""
        input_dim = positive_int("input_dim", input_dim)
        if self.sensory_adjacency is not None:
            if self.input_dim != input_dim:
                raise ValueError(
                    f"{type(self).__name__} is already built for input_dim={self.input_dim}, "
                    f"cannot rebuild it for input_dim={input_dim}"
                )
            return self
        self.sensory_adjacency = self._make_sensory(input_dim)
        return self

    def _make_sensory(self, input_dim: int) -> np.ndarray:
        """Sensory synapses of a matrix-given wiring: every input feeds every neuron, excitatory."""
        return np.ones((input_dim, self.units), dtype=np.int8)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def synapse_count(self) -> int:
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self) -> int:
        return 0 if self.sensory_adjacency is None else int(np.count_nonzero(self.sensory_adjacency))

    def erev_init(self) -> np.ndarray:
        """(units, units) float32 initial reversal potentials: the synapse polarities."""
        return self.adjacency.astype(np.float32)

    def sensory_erev_init(self) -> np.ndarray:
        """(input_dim, units) float32 initial sensory reversal potentials."""
        self._require_built()
        return self.sensory_adjacency.astype(np.float32)

    def _require_built(self) -> None:
        if self.sensory_adjacency is None:
            raise RuntimeError(f"{type(self).__name__} is not built: call build(input_dim) first")

    def _check_layers(self) -> None:
        flat = sorted(i for layer in self.layers for i in layer)
        if flat != list(range(self.units)):
            raise ValueError(f"layers must partition the neuron ids 0..{self.units - 1}, got {self.layers}")
        if any(len(layer) == 0 for layer in self.layers):
            raise ValueError(f"layers must not be empty, got {self.layers}")

    # --------------------------------------------------------------------------------------------- config
    def _init_args(self) -> dict[str, Any]:
        """Constructor arguments of the subclass (matrices excluded)."""
        return {"units": self.units, "output_dim": self.output_dim, "layers": self.layers}

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable description, including the built matrices."""
        config: dict[str, Any] = {"class": type(self).__name__, **self._init_args()}
        config["adjacency"] = self.adjacency.tolist()
        config["sensory_adjacency"] = (
            None if self.sensory_adjacency is None else self.sensory_adjacency.tolist()
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Wiring:
        """Rebuild a wiring from ``get_config()`` output (dispatching on its ``class`` entry)."""
        config = dict(config)
        name = config.pop("class", cls.__name__)
        target = Wiring._registry.get(name, Wiring if name == "Wiring" else None)
        if target is None:
            raise ValueError(f"unknown wiring class {name!r}; known: {sorted(['Wiring', *Wiring._registry])}")
        adjacency = config.pop("adjacency", None)
        sensory = config.pop("sensory_adjacency", None)
        if target is Wiring:
            return Wiring(**config, adjacency=adjacency, sensory_adjacency=sensory)
        wiring = target(**config)
        if adjacency is not None:
            wiring.adjacency = _polarity_matrix("adjacency", adjacency, (wiring.units, wiring.units))
        if sensory is not None:
            sensory = np.asarray(sensory)
            wiring.sensory_adjacency = _polarity_matrix(
                "sensory_adjacency", sensory, (sensory.shape[0], wiring.units)
            )
        return wiring

    def copy(self) -> Wiring:
        return Wiring.from_config(self.get_config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._init_args().items() if k != "layers")
        built = f", input_dim={self.input_dim}" if self.is_built() else ""
        return f"{type(self).__name__}({args}{built}, synapses={self.synapse_count})"


class FullyConnected(Wiring):
    """Every neuron feeds every neuron (and every input every neuron); polarities random, 1/3 inhibitory."""

    def __init__(
        self, units: int, output_dim: int | None = None, self_connections: bool = True, seed: int = 1111
    ) -> None:
        super().__init__(units, output_dim)
        self.self_connections = bool(self_connections)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        adjacency = _random_polarities(self._rng, (units, units), inhibitory_fraction=1 / 3)
        if not self.self_connections:
            np.fill_diagonal(adjacency, 0)
        self.adjacency = adjacency

    def _make_sensory(self, input_dim: int) -> np.ndarray:
        return _random_polarities(self._rng, (input_dim, self.units), inhibitory_fraction=1 / 3)

    def _init_args(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "self_connections": self.self_connections,
            "seed": self.seed,
        }


class Random(Wiring):
    """A random subset of ``(1 - sparsity_level)`` of all synapses (recurrent and sensory alike)."""

    def __init__(
        self, units: int, output_dim: int | None = None, sparsity_level: float = 0.0, seed: int = 1111
    ) -> None:
        super().__init__(units, output_dim)
        if not 0.0 <= float(sparsity_level) < 1.0:
            raise ValueError(f"sparsity_level must be in [0, 1), got {sparsity_level}")
        self.sparsity_level = float(sparsity_level)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self.adjacency = self._sparse_matrix((units, units))

    def _sparse_matrix(self, shape: tuple[int, int]) -> np.ndarray:
        n_total = shape[0] * shape[1]
        n_used = max(1, round(n_total * (1.0 - self.sparsity_level)))
        flat = np.zeros(n_total, dtype=np.int8)
        used = self._rng.choice(n_total, size=n_used, replace=False)
        flat[used] = _random_polarities(self._rng, (n_used,), inhibitory_fraction=1 / 3)
        return flat.reshape(shape)

    def _make_sensory(self, input_dim: int) -> np.ndarray:
        return self._sparse_matrix((input_dim, self.units))

    def _init_args(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_dim": self.output_dim,
            "sparsity_level": self.sparsity_level,
            "seed": self.seed,
        }


class NCP(Wiring):
    """Neural circuit policy: sensory -> inter -> command (recurrent) -> motor layers.

    Neuron ids: motor ``0..m-1``, then command, then inter. Each input feeds ``sensory_fanout`` inter
    neurons, each inter neuron ``inter_fanout`` command neurons, the command layer gets
    ``recurrent_command_synapses`` random recurrent synapses, and each motor neuron reads ``motor_fanin``
    command neurons. Neurons left without an input after that are connected to a few random sources, so
    that every neuron is reachable. Polarities are +1/-1 with equal probability.
    """

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = 22222,
    ) -> None:
        inter = positive_int("inter_neurons", inter_neurons)
        command = positive_int("command_neurons", command_neurons)
        motor = positive_int("motor_neurons", motor_neurons)
        self.motor_neurons = list(range(motor))
        self.command_neurons = list(range(motor, motor + command))
        self.inter_neurons = list(range(motor + command, motor + command + inter))
        super().__init__(
            inter + command + motor,
            motor,
            layers=[self.inter_neurons, self.command_neurons, self.motor_neurons],
        )
        checks = [
            ("sensory_fanout", sensory_fanout, inter, "inter neurons"),
            ("inter_fanout", inter_fanout, command, "command neurons"),
            ("motor_fanin", motor_fanin, command, "command neurons"),
        ]
        for name, value, limit, what in checks:
            positive_int(name, value)
            if value > limit:
                raise ValueError(f"{name} must be <= the number of {what} ({limit}), got {value}")
        if int(recurrent_command_synapses) < 0:
            raise ValueError(f"recurrent_command_synapses must be >= 0, got {recurrent_command_synapses}")
        self.sensory_fanout = int(sensory_fanout)
        self.inter_fanout = int(inter_fanout)
        self.recurrent_command_synapses = int(recurrent_command_synapses)
        self.motor_fanin = int(motor_fanin)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._connect_layers(self.inter_neurons, self.command_neurons, self.inter_fanout, self.adjacency)
        for _ in range(self.recurrent_command_synapses):
            src, dest = self._rng.choice(self.command_neurons, size=2)
            self.adjacency[src, dest] = self._rng.choice([-1, 1])
        self._connect_motor()

    def _connect_layers(
        self, sources: list[int], targets: list[int], fanout: int, matrix: np.ndarray
    ) -> None:
        """Each source feeds ``fanout`` random targets; unreached targets get the mean fan-in of sources."""
        reached: set[int] = set()
        for src in sources:
            for dest in self._rng.choice(targets, size=fanout, replace=False):
                matrix[src, dest] = self._rng.choice([-1, 1])
                reached.add(int(dest))
        fanin = int(np.clip(len(sources) * fanout // len(targets), 1, len(sources)))
        for dest in targets:
            if dest in reached:
                continue
            for src in self._rng.choice(sources, size=fanin, replace=False):
                matrix[src, dest] = self._rng.choice([-1, 1])

    def _connect_motor(self) -> None:
        """Each motor neuron reads ``motor_fanin`` command neurons; unused command neurons feed motors."""
        used: set[int] = set()
        for dest in self.motor_neurons:
            for src in self._rng.choice(self.command_neurons, size=self.motor_fanin, replace=False):
                self.adjacency[src, dest] = self._rng.choice([-1, 1])
                used.add(int(src))
        fanout = int(
            np.clip(
                len(self.motor_neurons) * self.motor_fanin // len(self.command_neurons),
                1,
                len(self.motor_neurons),
            )
        )
        for src in self.command_neurons:
            if src in used:
                continue
            for dest in self._rng.choice(self.motor_neurons, size=fanout, replace=False):
                self.adjacency[src, dest] = self._rng.choice([-1, 1])

    def _make_sensory(self, input_dim: int) -> np.ndarray:
        sensory = np.zeros((input_dim, self.units), dtype=np.int8)
        self._connect_layers(list(range(input_dim)), self.inter_neurons, self.sensory_fanout, sensory)
        return sensory

    def _init_args(self) -> dict[str, Any]:
        return {
            "inter_neurons": len(self.inter_neurons),
            "command_neurons": len(self.command_neurons),
            "motor_neurons": len(self.motor_neurons),
            "sensory_fanout": self.sensory_fanout,
            "inter_fanout": self.inter_fanout,
            "recurrent_command_synapses": self.recurrent_command_synapses,
            "motor_fanin": self.motor_fanin,
            "seed": self.seed,
        }


class AutoNCP(NCP):
    """An NCP sized from the total ``units``, the number of outputs and a sparsity level in [0.1, 0.9].

    ``units - output_size`` neurons are split 60/40 into inter and command neurons; fan-outs are the
    layer sizes times the density ``1 - sparsity_level`` (the ncps convention, so sizes carry over).
    """

    def __init__(self, units: int, output_size: int, sparsity_level: float = 0.5, seed: int = 22222) -> None:
        units = positive_int("units", units)
        output_size = positive_int("output_size", output_size)
        if output_size >= units - 2:
            raise ValueError(f"output_size must be < units - 2 ({units - 2}), got {output_size}")
        if not 0.1 <= float(sparsity_level) <= 0.9:
            raise ValueError(f"sparsity_level must be in [0.1, 0.9], got {sparsity_level}")
        self.auto_units = units
        self.sparsity_level = float(sparsity_level)
        density = 1.0 - self.sparsity_level
        hidden = units - output_size
        command = max(int(0.4 * hidden), 1)
        inter = hidden - command
        super().__init__(
            inter_neurons=inter,
            command_neurons=command,
            motor_neurons=output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
        )

    def _init_args(self) -> dict[str, Any]:
        return {
            "units": self.auto_units,
            "output_size": self.output_dim,
            "sparsity_level": self.sparsity_level,
            "seed": self.seed,
        }


# ------------------------------------------------------------------------------------------------ helpers
def _random_polarities(
    rng: np.random.Generator, shape: tuple[int, ...], inhibitory_fraction: float
) -> np.ndarray:
    return np.where(rng.random(shape) < inhibitory_fraction, -1, 1).astype(np.int8)


def _polarity_matrix(name: str, matrix: Any, shape: tuple[int, int]) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {matrix.shape}")
    if not np.isin(matrix, (-1, 0, 1)).all():
        raise ValueError(
            f"{name} entries must be -1, 0 or +1 (synapse polarity), got values {np.unique(matrix)}"
        )
    return matrix.astype(np.int8)

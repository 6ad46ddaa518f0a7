"""C99 code generation for an ``ActorStep``: one ``.c`` + ``.h`` pair, float32, no allocation, libm only.

Generated interface (``<prefix>`` as given, ``<PREFIX>`` upper case)::

    #define <PREFIX>_OBS_DIM   n_obs
    #define <PREFIX>_ACT_DIM   n_act
    #define <PREFIX>_STATE_DIM H_total          (num_layers * state_size, layout as ActorStep)
    #define <PREFIX>_NOMINAL_DT dt0             (seconds)
    void <prefix>_reset(float *state);          (zeros: the state at an episode start)
    int  <prefix>_step(const float *obs, float *state, float dt, float *action);

``<prefix>_step`` returns 0, or -1 for a non-finite observation and -2 for a dt that is negative or not
finite; on an error neither ``state`` nor ``action`` is written. The weights are ``static const float``
arrays (derived weights, e.g. softplus'ed LTC conductances, are computed once here, in float32, with the same
torch code the policy runs). Dense layers loop over inputs outside and outputs inside with literal bounds, so
a compiler vectorises them at -O2; sparse wirings (CfC blocks, LTC synapses) are edge lists, so the cost of an
NCP scales with its synapses. Temporaries live on the stack (a few KiB at most for the sizes used here).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import lnn_control
from lnn_control.nn.cfc import CfCCell, LeCunTanh
from lnn_control.nn.ltc import LTCCell

from .meta import ActorMeta
from .step import ActorStep

__all__ = ["generate_c"]


@dataclass
class _Program:
    """Accumulates the C file: constant arrays, helper functions, locals and the step body."""

    prefix: str
    data: list[str] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)
    locals: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def name(self, tag: str) -> str:
        base = f"{self.prefix}_{tag}"
        candidate, n = base, 1
        while candidate in self.names:
            n += 1
            candidate = f"{base}{n}"
        self.names.add(candidate)
        return candidate

    def const(self, tag: str, values: np.ndarray | torch.Tensor) -> str:
        """A ``static const float`` array; returns its name."""
        array = _as_f32(values).reshape(-1)
        if not np.isfinite(array).all():
            raise ValueError(
                f"cannot export non-finite weights ({tag}): the policy has NaN or inf parameters"
            )
        name = self.name(tag)
        self.data.append(f"static const float {name}[{max(array.size, 1)}] = {{\n{_format(array)}\n}};")
        return name

    def index(self, tag: str, values: np.ndarray) -> str:
        """A ``static const uint16_t`` / ``uint32_t`` index array; returns its name."""
        array = np.asarray(values, dtype=np.int64).reshape(-1)
        ctype = "uint16_t" if array.size == 0 or array.max() < 65536 else "uint32_t"
        name = self.name(tag)
        body = ",".join(str(int(v)) for v in array) if array.size else "0"
        lines = "\n".join("    " + line for line in _wrap(body))
        self.data.append(f"static const {ctype} {name}[{max(array.size, 1)}] = {{\n{lines}\n}};")
        return name

    def buffer(self, tag: str, size: int) -> str:
        """A local float array of the step function."""
        name = self.name(tag)
        self.locals.append(f"    float {name}[{max(int(size), 1)}];")
        return name

    def emit(self, *lines: str) -> None:
        self.body.extend("    " + line for line in lines)

    def helper(self, key: str, code: str) -> None:
        self.helpers.setdefault(key, code)

    def sigmoid(self) -> str:
        fn = f"{self.prefix}_sigmoid"
        self.helper(fn, f"static float {fn}(float x)\n{{\n    return 1.0f / (1.0f + expf(-x));\n}}")
        return fn


# ------------------------------------------------------------------------------------------- formatting
def _as_f32(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def _lit(value: float) -> str:
    """A float32 C literal that round-trips exactly (9 significant digits)."""
    value = float(np.float32(value))
    if not math.isfinite(value):
        raise ValueError(f"cannot write non-finite constant {value} into C code")
    text = f"{value:.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def _wrap(text: str, width: int = 100) -> list[str]:
    lines, current = [], ""
    for item in text.split(","):
        piece = item + ","
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = ""
        current += piece
    if current:
        lines.append(current.rstrip(","))
    return lines


def _format(array: np.ndarray) -> str:
    if array.size == 0:
        return "    0.0f"
    return "\n".join("    " + line for line in _wrap(",".join(_lit(v) for v in array)))


# ------------------------------------------------------------------------------------------ primitives
def _affine(
    prog: _Program,
    out: str,
    n_out: int,
    parts: list[tuple[str, np.ndarray, np.ndarray | None]],
    bias: np.ndarray | None,
    tag: str,
) -> None:
    """out[:n_out] = bias + sum over parts of W @ src, each part (src, W (n_out, n_in), mask or None).

    A part with a mask (a wiring) becomes an edge list of its existing synapses, so that its cost scales with
    the synapse count; a dense part is a matrix stored transposed (n_in, n_out), looped with the output
    index innermost (vectorisable).
    """
    if bias is None:
        prog.emit(f"for (int o = 0; o < {n_out}; ++o) {out}[o] = 0.0f;")
    else:
        b = prog.const(f"{tag}_b", bias)
        prog.emit(f"for (int o = 0; o < {n_out}; ++o) {out}[o] = {b}[o];")
    for k, (src, weight, mask) in enumerate(parts):
        weight = _as_f32(weight)
        n_in = weight.shape[1]
        if n_in == 0 or (mask is not None and not np.any(mask)):
            continue
        if mask is not None and not np.all(mask):
            dst_idx, src_idx = np.nonzero(np.asarray(mask))
            order = np.lexsort((dst_idx, src_idx))  # by input, then output: sequential reads of src
            dst_idx, src_idx = dst_idx[order], src_idx[order]
            w = prog.const(f"{tag}_w{k}", weight[dst_idx, src_idx])
            si = prog.index(f"{tag}_src{k}", src_idx)
            di = prog.index(f"{tag}_dst{k}", dst_idx)
            prog.emit(f"for (int e = 0; e < {dst_idx.size}; ++e) {out}[{di}[e]] += {w}[e] * {src}[{si}[e]];")
        else:
            if mask is not None:
                weight = weight * (np.asarray(mask) != 0)
            wt = prog.const(f"{tag}_wt{k}", np.ascontiguousarray(weight.T))
            blocked = n_in - n_in % 4
            if blocked:  # four inputs per pass over the outputs: a quarter of the loads/stores of out
                prog.emit(
                    f"for (int i = 0; i < {blocked}; i += 4) {{",
                    f"    const float x0 = {src}[i], x1 = {src}[i + 1];",
                    f"    const float x2 = {src}[i + 2], x3 = {src}[i + 3];",
                    f"    const float *w = {wt} + i * {n_out};",
                    f"    for (int o = 0; o < {n_out}; ++o)",
                    f"        {out}[o] += w[o] * x0 + w[{n_out} + o] * x1 + w[{2 * n_out} + o] * x2"
                    f" + w[{3 * n_out} + o] * x3;",
                    "}",
                )
            if blocked < n_in:
                prog.emit(
                    f"for (int i = {blocked}; i < {n_in}; ++i) {{",
                    f"    const float xi = {src}[i];",
                    f"    const float *w = {wt} + i * {n_out};",
                    f"    for (int o = 0; o < {n_out}; ++o) {out}[o] += w[o] * xi;",
                    "}",
                )


def _activation(module: nn.Module) -> tuple[str, float] | None:
    """(kind, parameter) of a supported activation module; None for an identity."""
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return None
    table: list[tuple[type, str]] = [
        (nn.Tanh, "tanh"),
        (nn.ReLU, "relu"),
        (nn.Sigmoid, "sigmoid"),
        (nn.SiLU, "silu"),
        (LeCunTanh, "lecun_tanh"),
    ]
    for cls, kind in table:
        if isinstance(module, cls):
            return kind, 0.0
    if isinstance(module, nn.ELU):
        return "elu", float(module.alpha)
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", float(module.negative_slope)
    if isinstance(module, nn.GELU):
        return ("gelu_tanh" if module.approximate == "tanh" else "gelu"), 0.0
    raise TypeError(
        f"C export does not support the activation {type(module).__name__}; supported: Tanh, ReLU, Sigmoid, "
        "SiLU, ELU, LeakyReLU, GELU, LeCun tanh, Identity"
    )


def _apply(prog: _Program, buf: str, n: int, act: tuple[str, float] | None) -> None:
    """Apply an activation in place to buf[:n]."""
    if act is None:
        return
    kind, p = act
    v = f"{buf}[j]"
    if kind == "tanh":
        expr = f"tanhf({v})"
    elif kind == "lecun_tanh":
        expr = f"1.7159f * tanhf(0.666f * {v})"
    elif kind == "relu":
        expr = f"({v} > 0.0f ? {v} : 0.0f)"
    elif kind == "sigmoid":
        expr = f"{prog.sigmoid()}({v})"
    elif kind == "silu":
        expr = f"{v} * {prog.sigmoid()}({v})"
    elif kind == "elu":
        expr = f"({v} > 0.0f ? {v} : {_lit(p)} * expm1f({v}))"
    elif kind == "leaky_relu":
        expr = f"({v} > 0.0f ? {v} : {_lit(p)} * {v})"
    elif kind == "gelu":
        expr = f"0.5f * {v} * (1.0f + erff({v} * 0.707106781f))"
    elif kind == "gelu_tanh":
        expr = f"0.5f * {v} * (1.0f + tanhf(0.797884561f * ({v} + 0.044715f * {v} * {v} * {v})))"
    else:  # pragma: no cover - _activation only returns the kinds above
        raise AssertionError(kind)
    prog.emit(f"for (int j = 0; j < {n}; ++j) {v} = {expr};")


def _flatten_modules(modules: list[nn.Module]) -> list[nn.Module]:
    flat: list[nn.Module] = []
    for m in modules:
        if isinstance(m, nn.Sequential):
            flat.extend(_flatten_modules(list(m)))
        else:
            flat.append(m)
    return flat


def _mlp(prog: _Program, src: str, n: int, modules: list[nn.Module], tag: str) -> tuple[str, int]:
    """Linear layers and activations in order; returns (buffer, size) of the result."""
    for i, m in enumerate(_flatten_modules(modules)):
        if isinstance(m, nn.Linear):
            out = prog.buffer(f"{tag}{i}", m.out_features)
            bias = None if m.bias is None else m.bias
            _affine(prog, out, m.out_features, [(src, _as_f32(m.weight), None)], bias, f"{tag}{i}")
            src, n = out, m.out_features
        else:
            _apply(prog, src, n, _activation(m))
    return src, n


# ------------------------------------------------------------------------------------------------ cells
def _cfc_layer(prog: _Program, cell: CfCCell, x: str, n_in: int, offset: int, tag: str) -> tuple[str, int]:
    """One CfC layer updating state[offset : offset + state_size]; returns its output buffer."""
    with torch.no_grad():
        part_offset = offset
        previous: str | None = None
        prev_size = n_in
        for b, block in enumerate(cell.blocks):
            weights = [_as_f32(w) for w in block.fused_weights()]
            hidden = block.hidden
            src = x if previous is None else previous
            mask = None if block.mask is None else block.mask.numpy()
            n_src = block.in_features
            if n_src != prev_size:
                raise AssertionError("CfC block sizes do not chain")
            z = prog.buffer(f"{tag}b{b}_z", weights[0].shape[0])
            mask_x = None if mask is None else mask[:, :n_src]
            mask_h = None if mask is None else mask[:, n_src:]
            state_ref = f"(state + {part_offset})"
            _affine(
                prog,
                z,
                weights[0].shape[0],
                [(src, weights[0], mask_x), (state_ref, weights[2], mask_h)],
                weights[1],
                f"{tag}b{b}_in",
            )
            heads = z
            n_back = len(block.backbone)
            if n_back:
                inner = (
                    ("tanh", 0.0)
                    if isinstance(block.activation, LeCunTanh)
                    else _activation(block.activation)
                )
                _apply(prog, z, weights[0].shape[0], inner)
                cur = z
                for k in range(1, n_back):
                    w_k, b_k = weights[2 * k + 1], weights[2 * k + 2]
                    nxt = prog.buffer(f"{tag}b{b}_z{k}", w_k.shape[0])
                    _affine(prog, nxt, w_k.shape[0], [(cur, w_k, None)], b_k, f"{tag}b{b}_bb{k}")
                    _apply(prog, nxt, w_k.shape[0], inner)
                    cur = nxt
                heads = prog.buffer(f"{tag}b{b}_heads", weights[-2].shape[0])
                _affine(
                    prog,
                    heads,
                    weights[-2].shape[0],
                    [(cur, weights[-2], None)],
                    weights[-1],
                    f"{tag}b{b}_hd",
                )
            _cfc_gate(prog, block, heads, f"(state + {part_offset})", hidden, f"{tag}b{b}")
            previous = f"(state + {part_offset})"
            prev_size = hidden
            part_offset += hidden
        out = prog.buffer(f"{tag}_y", cell.output_size)
        if cell.wiring is None:
            prog.emit(f"for (int j = 0; j < {cell.output_size}; ++j) {out}[j] = state[{offset} + j];")
        else:
            motor = prog.index(f"{tag}_motor", cell.motor_index.numpy())
            prog.emit(
                f"for (int j = 0; j < {cell.output_size}; ++j) {out}[j] = state[{offset} + {motor}[j]];"
            )
    return out, cell.output_size


def _cfc_gate(prog: _Program, block: nn.Module, heads: str, h: str, hidden: int, tag: str) -> None:
    """Write the new state h[:hidden] from the heads (mode default, no_gate or pure)."""
    if block.mode == "pure":
        w_tau = prog.const(f"{tag}_wtau", block.w_tau.detach().abs())
        a = prog.const(f"{tag}_A", block.A.detach())
        prog.emit(
            f"for (int j = 0; j < {hidden}; ++j)",
            f"    {h}[j] = {a}[j] - {a}[j] * expf(-dt * ({w_tau}[j] + fabsf({heads}[j]))) * {heads}[j];",
        )
        return
    sig = prog.sigmoid()
    combine = "ff1 + g * ff2" if block.mode == "no_gate" else "ff1 + g * (ff2 - ff1)"
    prog.emit(
        f"for (int j = 0; j < {hidden}; ++j) {{",
        f"    const float ff1 = tanhf({heads}[j]);",
        f"    const float ff2 = tanhf({heads}[{hidden} + j]);",
        f"    const float g = {sig}({heads}[{3 * hidden} + j] + {heads}[{2 * hidden} + j] * dt);",
        f"    {h}[j] = {combine};",
        "}",
    )


def _ltc_layer(prog: _Program, cell: LTCCell, x: str, n_in: int, offset: int, tag: str) -> tuple[str, int]:
    """One LTC layer integrating state[offset : offset + units] over dt; returns its output buffer."""
    units = cell.state_size
    with torch.no_grad():
        w = cell.positive("w") * cell.mask
        sigma_mu = cell.sigma * cell.mu
        pre, post = (t.numpy() for t in cell.mask.nonzero(as_tuple=True))
        s_in, s_out = (t.numpy() for t in cell.sensory_mask.nonzero(as_tuple=True))
        sensory_w = cell.positive("sensory_w") * cell.sensory_mask
        gleak = cell.positive("gleak")
        values = {
            "cm": cell.positive("cm"),
            "gleak": gleak + cell.epsilon,  # as the cell: epsilon joins the leak conductance
            "leak": gleak * cell.vleak,
            "in_w": cell.input_w,
            "in_b": cell.input_b,
            "out_w": cell.output_w,
            "out_b": cell.output_b,
        }
        c = {k: prog.const(f"{tag}_{k}", v) for k, v in values.items()}
        syn = {
            "sig": prog.const(f"{tag}_sig", cell.sigma[pre, post]),
            "sigmu": prog.const(f"{tag}_sigmu", sigma_mu[pre, post]),
            "werev": prog.const(f"{tag}_werev", (w * cell.erev)[pre, post]),
            "w": prog.const(f"{tag}_wsyn", w[pre, post]),
            "pre": prog.index(f"{tag}_pre", pre),
            "post": prog.index(f"{tag}_post", post),
        }
        sens = {
            "sig": prog.const(f"{tag}_ssig", cell.sensory_sigma[s_in, s_out]),
            "mu": prog.const(f"{tag}_smu", cell.sensory_mu[s_in, s_out]),
            "w": prog.const(f"{tag}_sw", sensory_w[s_in, s_out]),
            "erev": prog.const(f"{tag}_serev", cell.sensory_erev[s_in, s_out]),
            "in": prog.index(f"{tag}_sin", s_in),
            "out": prog.index(f"{tag}_sout", s_out),
        }
    sig = prog.sigmoid()
    synaptic = f"{tag}_synaptic"
    fn = prog.name(synaptic)
    prog.helper(
        fn,
        "\n".join(
            [
                f"/* recurrent synaptic currents of {tag}: {pre.size} synapses */",
                f"static void {fn}(const float *u, float *num, float *den)",
                "{",
                f"    for (int j = 0; j < {units}; ++j) {{ num[j] = 0.0f; den[j] = 0.0f; }}",
                f"    for (int e = 0; e < {pre.size}; ++e) {{",
                f"        const float a = {sig}({syn['sig']}[e] * u[{syn['pre']}[e]] - {syn['sigmu']}[e]);",
                f"        num[{syn['post']}[e]] += a * {syn['werev']}[e];",
                f"        den[{syn['post']}[e]] += a * {syn['w']}[e];",
                "    }",
                "}",
            ]
        ),
    )
    xin, drive, cond = (
        prog.buffer(f"{tag}_{n}", s) for n, s in (("xin", n_in), ("drive", units), ("cond", units))
    )
    num, den = prog.buffer(f"{tag}_num", units), prog.buffer(f"{tag}_den", units)
    v = f"(state + {offset})"
    prog.emit(
        f"for (int i = 0; i < {n_in}; ++i) {xin}[i] = {c['in_b']}[i] + {x}[i] * {c['in_w']}[i];",
        f"for (int j = 0; j < {units}; ++j) {{ {num}[j] = 0.0f; {den}[j] = 0.0f; }}",
        f"for (int e = 0; e < {s_in.size}; ++e) {{",
        f"    const float a = {sig}({sens['sig']}[e] * ({xin}[{sens['in']}[e]] - {sens['mu']}[e]))",
        f"                    * {sens['w']}[e];",
        f"    {num}[{sens['out']}[e]] += a * {sens['erev']}[e];",
        f"    {den}[{sens['out']}[e]] += a;",
        "}",
        f"for (int j = 0; j < {units}; ++j) {{",
        f"    {drive}[j] = {c['leak']}[j] + {num}[j];",
        f"    {cond}[j] = {c['gleak']}[j] + {den}[j];",
        "}",
    )
    count, step = prog.name(f"{tag}_n"), prog.name(f"{tag}_hs")
    if cell.max_step is None:
        prog.emit(f"const int {count} = {cell.unfolds};", f"const float {step} = dt / {_lit(cell.unfolds)};")
    else:
        max_substeps = cell.max_substeps  # fixed by the actor step for every dt <= its max_dt
        if max_substeps is None:
            raise AssertionError("LTC with max_step needs the exported substep bound")
        cnt = prog.name(f"{tag}_c")
        prog.emit(
            f"float {cnt} = ceilf(dt / {_lit(cell.max_step)});",
            f"if ({cnt} < {_lit(cell.unfolds)}) {cnt} = {_lit(cell.unfolds)};",
            f"if ({cnt} > {_lit(max_substeps)}) {cnt} = {_lit(max_substeps)};",
            f"const int {count} = (int){cnt};",
            f"const float {step} = dt / {cnt};",
        )
    cm = c["cm"]
    prog.emit(f"for (int s = 0; s < {count}; ++s) {{")
    if cell.solver == "semi_implicit":
        prog.emit(
            f"    {fn}({v}, {num}, {den});",
            f"    for (int j = 0; j < {units}; ++j)",
            f"        {v}[j] = ({cm}[j] * {v}[j] + {step} * ({drive}[j] + {num}[j])) /",
            f"                 ({cm}[j] + {step} * ({cond}[j] + {den}[j]));",
        )
    else:
        k1 = prog.buffer(f"{tag}_k1", units)

        def rate(u: str, k: str) -> None:
            prog.emit(
                f"    {fn}({u}, {num}, {den});",
                f"    for (int j = 0; j < {units}; ++j)",
                f"        {k}[j] = ({drive}[j] + {num}[j] - ({cond}[j] + {den}[j]) * {u}[j]) / {cm}[j];",
            )

        rate(v, k1)
        if cell.solver == "euler":
            prog.emit(f"    for (int j = 0; j < {units}; ++j) {v}[j] = {v}[j] + {step} * {k1}[j];")
        else:
            k2, k3, k4 = (prog.buffer(f"{tag}_k{i}", units) for i in (2, 3, 4))
            u = prog.buffer(f"{tag}_u", units)
            prog.emit(f"    for (int j = 0; j < {units}; ++j) {u}[j] = {v}[j] + 0.5f * {step} * {k1}[j];")
            rate(u, k2)
            prog.emit(f"    for (int j = 0; j < {units}; ++j) {u}[j] = {v}[j] + 0.5f * {step} * {k2}[j];")
            rate(u, k3)
            prog.emit(f"    for (int j = 0; j < {units}; ++j) {u}[j] = {v}[j] + {step} * {k3}[j];")
            rate(u, k4)
            prog.emit(
                f"    for (int j = 0; j < {units}; ++j)",
                f"        {v}[j] = {v}[j] + {step} / 6.0f *",
                f"                 ({k1}[j] + 2.0f * ({k2}[j] + {k3}[j]) + {k4}[j]);",
            )
    prog.emit("}")
    out = prog.buffer(f"{tag}_y", cell.output_size)
    prog.emit(
        f"for (int j = 0; j < {cell.output_size}; ++j) {out}[j] = {v}[j] * {c['out_w']}[j] + {c['out_b']}[j];"
    )
    return out, cell.output_size


def _torch_rnn_layers(prog: _Program, core: nn.Module, x: str, n_in: int) -> tuple[str, int]:
    """LSTM (state [h, c] per layer) or GRU (state h) layers; returns the last layer's h buffer."""
    rnn = core.rnn
    units = rnn.hidden_size
    size = core.state_size
    src = x
    for layer in range(rnn.num_layers):
        tag = f"{core.kind}{layer}"
        w_ih = _as_f32(getattr(rnn, f"weight_ih_l{layer}"))
        w_hh = _as_f32(getattr(rnn, f"weight_hh_l{layer}"))
        b_ih = _as_f32(getattr(rnn, f"bias_ih_l{layer}")) if rnn.bias else None
        b_hh = _as_f32(getattr(rnn, f"bias_hh_l{layer}")) if rnn.bias else None
        h = f"(state + {layer * size})"
        gi = prog.buffer(f"{tag}_gi", w_ih.shape[0])
        gh = prog.buffer(f"{tag}_gh", w_hh.shape[0])
        _affine(prog, gi, w_ih.shape[0], [(src, w_ih, None)], b_ih, f"{tag}_ih")
        _affine(prog, gh, w_hh.shape[0], [(h, w_hh, None)], b_hh, f"{tag}_hh")
        sig = prog.sigmoid()
        u = units
        if core.kind == "lstm":
            prog.emit(
                f"for (int j = 0; j < {u}; ++j) {{",
                f"    const float ig = {sig}({gi}[j] + {gh}[j]);",
                f"    const float fg = {sig}({gi}[{u} + j] + {gh}[{u} + j]);",
                f"    const float gg = tanhf({gi}[{2 * u} + j] + {gh}[{2 * u} + j]);",
                f"    const float og = {sig}({gi}[{3 * u} + j] + {gh}[{3 * u} + j]);",
                f"    const float c = fg * {h}[{u} + j] + ig * gg;",
                f"    {h}[{u} + j] = c;",
                f"    {h}[j] = og * tanhf(c);",
                "}",
            )
        else:
            prog.emit(
                f"for (int j = 0; j < {u}; ++j) {{",
                f"    const float r = {sig}({gi}[j] + {gh}[j]);",
                f"    const float z = {sig}({gi}[{u} + j] + {gh}[{u} + j]);",
                f"    const float n = tanhf({gi}[{2 * u} + j] + r * {gh}[{2 * u} + j]);",
                f"    {h}[j] = (1.0f - z) * n + z * {h}[j];",
                "}",
            )
        out = prog.buffer(f"{tag}_y", u)
        prog.emit(f"for (int j = 0; j < {u}; ++j) {out}[j] = {h}[j];")
        src = out
    return src, units


# ---------------------------------------------------------------------------------------------- program
def generate_c(actor: ActorStep, meta: ActorMeta, prefix: str = "policy") -> tuple[str, str]:
    """C99 source and header implementing ``actor`` (see the module docstring). Returns (source, header)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise ValueError(f"prefix must be a C identifier (letters, digits, _), got {prefix!r}")
    if actor.extractor is not None:
        raise ValueError(
            f"C export supports the Flatten features extractor only, got {type(actor.extractor).__name__}"
        )
    prog = _Program(prefix)
    n_obs, n_act, n_state = actor.obs_dim, actor.act_dim, actor.state_dim
    upper = prefix.upper()
    x = prog.buffer("x", n_obs)
    prog.emit(
        f"for (int i = 0; i < {n_obs}; ++i) if (!isfinite(obs[i])) return -1;",
        "if (!(dt >= 0.0f) || !isfinite(dt)) return -2;",
    )
    if actor.is_liquid and actor.time_unit != 1.0:
        prog.emit(f"dt = dt / {_lit(actor.time_unit)}; /* the cores integrate dt in time units */")
    if actor.normalize:
        mean = prog.const("obs_mean", actor.obs_mean)
        std = prog.const("obs_std", actor.obs_std)
        clip = _lit(min(actor.clip_obs, 3.0e38))
        prog.emit(
            f"for (int i = 0; i < {n_obs}; ++i) {{",
            f"    float v = (obs[i] - {mean}[i]) / {std}[i];",
            f"    {x}[i] = v < -{clip} ? -{clip} : (v > {clip} ? {clip} : v);",
            "}",
        )
    else:
        prog.emit(f"for (int i = 0; i < {n_obs}; ++i) {x}[i] = obs[i];")
    dt_used = True
    core = actor.core
    src, n = x, n_obs
    if actor.is_liquid:
        for layer, cell in enumerate(core.cells):
            offset = layer * actor.state_size
            if isinstance(cell, CfCCell):
                src, n = _cfc_layer(prog, cell, src, n, offset, f"cfc{layer}")
            else:
                src, n = _ltc_layer(prog, cell, src, n, offset, f"ltc{layer}")
        if core.proj is not None:
            src, n = _mlp(prog, src, n, [core.proj], "proj")
    else:
        src, n = _torch_rnn_layers(prog, core, src, n)
        dt_used = False
    src, n = _mlp(prog, src, n, list(actor.head), "head")
    if n != n_act:
        raise AssertionError(f"head output {n} != act_dim {n_act}")
    low, high = actor.action_low.numpy(), actor.action_high.numpy()
    if actor.postprocess == "clip":
        lo = prog.const("act_low", np.clip(low, -3.0e38, 3.0e38))
        hi = prog.const("act_high", np.clip(high, -3.0e38, 3.0e38))
        prog.emit(
            f"for (int j = 0; j < {n_act}; ++j) {{",
            f"    const float a = {src}[j] > {hi}[j] ? {hi}[j] : {src}[j];",
            f"    action[j] = a < {lo}[j] ? {lo}[j] : a;",
            "}",
        )
    elif actor.postprocess == "tanh_rescale":
        lo, hi = prog.const("act_low", low), prog.const("act_high", high)
        prog.emit(
            f"for (int j = 0; j < {n_act}; ++j)",
            f"    action[j] = {lo}[j] + 0.5f * (tanhf({src}[j]) + 1.0f) * ({hi}[j] - {lo}[j]);",
        )
    else:
        prog.emit(f"for (int j = 0; j < {n_act}; ++j) action[j] = {src}[j];")
    if not dt_used:
        prog.body.insert(0, "    (void)dt; /* LSTM/GRU: no notion of time */")

    header = _header(prefix, upper, meta)
    source = "\n".join(
        [
            _banner(meta),
            f'#include "{prefix}.h"',
            "",
            "#include <math.h>",
            "#include <stdint.h>",
            "",
            *prog.data,
            "",
            *prog.helpers.values(),
            "",
            f"void {prefix}_reset(float *state)",
            "{",
            f"    for (int i = 0; i < {n_state}; ++i) state[i] = 0.0f;",
            "}",
            "",
            f"int {prefix}_step(const float *obs, float *state, float dt, float *action)",
            "{",
            *prog.locals,
            *prog.body,
            "    return 0;",
            "}",
            "",
        ]
    )
    return source, header


def _banner(meta: ActorMeta) -> str:
    config = ", ".join(f"{k}={v}" for k, v in meta.cell_config.items() if v is not None)
    return (
        f"/* Generated by lnn-control {lnn_control.__version__}: deterministic actor, do not edit.\n"
        f" * cell: {meta.cell} ({config})\n"
        f" * obs_dim={meta.obs_dim} act_dim={meta.act_dim} state_dim={meta.state_dim} "
        f"(num_layers={meta.num_layers} x state_size={meta.state_size}); dt in seconds. */"
    )


def _header(prefix: str, upper: str, meta: ActorMeta) -> str:
    guard = f"{upper}_H"
    return "\n".join(
        [
            _banner(meta),
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            f"#define {upper}_OBS_DIM {meta.obs_dim}",
            f"#define {upper}_ACT_DIM {meta.act_dim}",
            f"#define {upper}_STATE_DIM {meta.state_dim}",
            f"#define {upper}_NOMINAL_DT {_lit(meta.nominal_dt)} /* seconds */",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/* Zero the recurrent state (float[{upper}_STATE_DIM]): call at every episode start. */",
            f"void {prefix}_reset(float *state);",
            "",
            f"/* One control step: obs[{upper}_OBS_DIM] (raw, normalised inside), state[{upper}_STATE_DIM]",
            f" * updated in place, dt = seconds since the previous observation (use {upper}_NOMINAL_DT after",
            f" * a reset), action[{upper}_ACT_DIM] written. Returns 0; -1 if an observation is not finite,",
            " * -2 if dt is negative or not finite (state and action are then left untouched). */",
            f"int {prefix}_step(const float *obs, float *state, float dt, float *action);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
            "",
        ]
    )

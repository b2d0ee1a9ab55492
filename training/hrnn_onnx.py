"""The HRNN's ONNX graphs, which kernel/hrnn_runtime.py runs for serving (onnxruntime + numpy).

Built with onnx.helper rather than traced: the graphs are a dozen nodes, their inputs are exactly
the ones named (the TorchScript exporter drops an unused h_user), and no torch is needed at export.
The GRU is training/hrnn_net.py's `gru`, node for node (reset after the matmul).
"""
from __future__ import annotations

import numpy as np


def _onnx_gru(nodes: list, p: str, gx: str, h: str, out: str) -> None:
    from onnx import helper
    nodes += [helper.make_node("MatMul", [h, f"{p}_Wh"], [f"{p}_hWh"]),
              helper.make_node("Add", [f"{p}_hWh", f"{p}_bh"], [f"{p}_gh"]),
              helper.make_node("Split", [gx], [f"{p}_xr", f"{p}_xz", f"{p}_xn"], axis=1, num_outputs=3),
              helper.make_node("Split", [f"{p}_gh"], [f"{p}_hr", f"{p}_hz", f"{p}_hn"], axis=1,
                               num_outputs=3),
              helper.make_node("Add", [f"{p}_xr", f"{p}_hr"], [f"{p}_r0"]),
              helper.make_node("Sigmoid", [f"{p}_r0"], [f"{p}_r"]),
              helper.make_node("Add", [f"{p}_xz", f"{p}_hz"], [f"{p}_z0"]),
              helper.make_node("Sigmoid", [f"{p}_z0"], [f"{p}_z"]),
              helper.make_node("Mul", [f"{p}_r", f"{p}_hn"], [f"{p}_rhn"]),
              helper.make_node("Add", [f"{p}_xn", f"{p}_rhn"], [f"{p}_n0"]),
              helper.make_node("Tanh", [f"{p}_n0"], [f"{p}_n"]),
              helper.make_node("Sub", [h, f"{p}_n"], [f"{p}_d"]),
              helper.make_node("Mul", [f"{p}_z", f"{p}_d"], [f"{p}_zd"]),
              helper.make_node("Add", [f"{p}_n", f"{p}_zd"], [out])]


def _graph(name: str, nodes: list, inputs: list, outputs: list[str], w: dict[str, np.ndarray], H: int):
    from onnx import TensorProto, helper, numpy_helper
    vi = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    vo = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", H]) for n in outputs]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    model = helper.make_model(helper.make_graph(nodes, name, vi, vo, inits),
                              opset_imports=[helper.make_opsetid("", 18)], producer_name="openpersonalize")
    model.ir_version = 9
    return model


def step_graph(w: dict[str, np.ndarray]):
    """(item_ids int64[B], h_session [B, H], h_user [B, H]) -> h_session_next [B, H].

    h_user is part of the contract but HRNN-init reads it only at session ends (the user graph)."""
    from onnx import TensorProto, helper
    H = w["E"].shape[1]
    nodes = [helper.make_node("Gather", ["E", "item_ids"], ["x"], axis=0),
             helper.make_node("MatMul", ["x", "s_Wx"], ["xWx"]),
             helper.make_node("Add", ["xWx", "s_bx"], ["gx"])]
    _onnx_gru(nodes, "s", "gx", "h_session", "h_session_next")
    inputs = [("item_ids", TensorProto.INT64, ["batch"]), ("h_session", TensorProto.FLOAT, ["batch", H]),
              ("h_user", TensorProto.FLOAT, ["batch", H])]
    return _graph("hrnn_step", nodes, inputs, ["h_session_next"],
                  {k: w[k] for k in ("E", "s_Wx", "s_bx", "s_Wh", "s_bh")}, H)


def user_graph(w: dict[str, np.ndarray]):
    """(h_session [B, H], h_user [B, H]) -> (h_session_start [B, H], h_user_next [B, H]) at a session end."""
    from onnx import TensorProto, helper
    H = w["E"].shape[1]
    nodes = [helper.make_node("MatMul", ["h_session", "u_Wx"], ["hWx"]),
             helper.make_node("Add", ["hWx", "u_bx"], ["gx"])]
    _onnx_gru(nodes, "u", "gx", "h_user", "h_user_next")
    nodes += [helper.make_node("MatMul", ["h_user_next", "i_W"], ["cW"]),
              helper.make_node("Add", ["cW", "i_b"], ["s0"]),
              helper.make_node("Tanh", ["s0"], ["h_session_start"])]
    inputs = [("h_session", TensorProto.FLOAT, ["batch", H]), ("h_user", TensorProto.FLOAT, ["batch", H])]
    return _graph("hrnn_user", nodes, inputs, ["h_session_start", "h_user_next"],
                  {k: w[k] for k in ("u_Wx", "u_bx", "u_Wh", "u_bh", "i_W", "i_b")}, H)

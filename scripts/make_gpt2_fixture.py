#!/usr/bin/env python3
"""Generate the tiny GPT-2 golden fixture in test/fixtures/gpt2-tiny/.

Builds a 2-layer GPT-2 (C = 32, 2 heads, full 50257-token vocabulary) in float32 with a fixed
seed, computed the way Hugging Face's GPT2LMHeadModel computes it in eval mode, and writes:

  config.json           Hugging Face GPT-2 config for the model
  model.safetensors     the weights under Hugging Face key names, plus the h.N.attn.bias mask buffer
  reference.safetensors input_ids, targets, logits, loss, grad.<name> for every parameter at
                        step 0, and adamw_losses (the loss before each of 10 AdamW steps)

Needs only PyTorch (Debian's python3-torch 1.13 works) and numpy. It does not use the
`transformers` or `safetensors` packages, so the model and the safetensors writer live here.
Before writing, it checks itself: gelu_new reference values, causality, an independent numpy
forward pass, float64 finite differences, and that deliberate wiring bugs move the logits.
Run by hand, never in CI:  /usr/bin/python3 scripts/make_gpt2_fixture.py

Dimension letters: B batch, T time, C channels, H heads, N = C/H head size, V vocabulary.
"""

import argparse
import copy
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "test" / "fixtures" / "gpt2-tiny"

SEED = 20240607

# Same fields and defaults as openai-community/gpt2's config.json, shrunk to 2 layers of width 32.
# The dropout rates are the released model's 0.1 on purpose: a loader must switch dropout off
# itself, and the reference below is computed without dropout.
CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 64,
    "n_embd": 32,
    "n_head": 2,
    "n_inner": None,
    "n_layer": 2,
    "n_positions": 64,
    "reorder_and_upcast_attn": False,
    "resid_pdrop": 0.1,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 50257,
}

# Initialisation (standard deviations of normal draws). GPT-2 itself uses 0.02 everywhere. At width
# 32 that leaves attention almost uniform, the MLP in GELU's near-linear range and the logits tiny.
# A wrong attention scale or an erf GELU would then move the logits by less than the golden
# test's 1e-4 tolerance. Hence a larger token embedding (it is also the output head),
# Conv1D weights of 1/sqrt(fan_in) (order-1 scores), and c_fc at twice that (pre-activations
# spread over GELU's curved range). Positions keep 0.02, so the first LayerNorm sees a small
# variance and its eps matters. check_wiring_bugs_move_logits enforces the margins.
TOKEN_EMBEDDING_STD = 0.1
POSITION_EMBEDDING_STD = 0.02
CONV1D_GAIN = 1.0  # std = gain / sqrt(fan_in)
MLP_UP_GAIN = 2.0  # c_fc only
BIAS_STD = 0.02
LAYER_NORM_WEIGHT_STD = 0.1  # around 1
LAYER_NORM_BIAS_STD = 0.1

# Token sequences of length T + 1. input_ids are the first T tokens and targets the last T, so
# targets[b, t] = input_ids[b, t + 1]. Ids near the end of the vocabulary catch off-by-one
# vocabulary sizes and embedding rows read from the wrong end.
TOKEN_SEQUENCES = [
    [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 50255],
    [0, 1, 50254, 13, 50256, 198, 40, 50256, 11],
]
IGNORE_INDEX = -100  # the last target of row 0 is replaced by this

ADAMW_STEPS = 10
ADAMW_LR = 1e-3
ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-8
ADAMW_WEIGHT_DECAY = 0.01  # applied to every parameter, biases, LayerNorms and embeddings included

GOLDEN_LOGITS_ATOL = 1e-4  # tolerance of the TypeScript golden test, used to size the wiring check
GOLDEN_GRADIENT_RTOL = 1e-4  # used only to report how many float32 gradient elements miss it
WIRING_MARGIN = 5  # each wiring bug must move some logit by WIRING_MARGIN x GOLDEN_LOGITS_ATOL


# ---------------------------------------------------------------------------------------------
# Model


def parameter_shapes(config):
    """Return the trainable parameters' names and shapes in Hugging Face's state_dict order."""
    C = config["n_embd"]
    V = config["vocab_size"]
    inner = config["n_inner"] or 4 * C
    shapes = {"wte.weight": (V, C), "wpe.weight": (config["n_positions"], C)}
    for layer in range(config["n_layer"]):
        prefix = f"h.{layer}."
        shapes[prefix + "ln_1.weight"] = (C,)
        shapes[prefix + "ln_1.bias"] = (C,)
        shapes[prefix + "attn.c_attn.weight"] = (C, 3 * C)  # Conv1D layout [in, out]
        shapes[prefix + "attn.c_attn.bias"] = (3 * C,)
        shapes[prefix + "attn.c_proj.weight"] = (C, C)
        shapes[prefix + "attn.c_proj.bias"] = (C,)
        shapes[prefix + "ln_2.weight"] = (C,)
        shapes[prefix + "ln_2.bias"] = (C,)
        shapes[prefix + "mlp.c_fc.weight"] = (C, inner)
        shapes[prefix + "mlp.c_fc.bias"] = (inner,)
        shapes[prefix + "mlp.c_proj.weight"] = (inner, C)
        shapes[prefix + "mlp.c_proj.bias"] = (C,)
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


def initial_value(name, shape, generator):
    """Draw one parameter's float32 initial value, with the scales set by the constants above."""
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if name == "wte.weight":
        return TOKEN_EMBEDDING_STD * noise
    if name == "wpe.weight":
        return POSITION_EMBEDDING_STD * noise
    if ".ln_" in name or name.startswith("ln_f."):
        if name.endswith(".weight"):
            return 1.0 + LAYER_NORM_WEIGHT_STD * noise
        return LAYER_NORM_BIAS_STD * noise
    if name.endswith(".bias"):
        return BIAS_STD * noise
    fan_in = shape[0]  # Conv1D weights are [in, out]
    gain = MLP_UP_GAIN if name.endswith("mlp.c_fc.weight") else CONV1D_GAIN
    return gain * noise / math.sqrt(fan_in)


def init_parameters(config, seed):
    """Return {name: float32 tensor} with every trainable parameter, drawn from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: initial_value(name, shape, generator)
        for name, shape in parameter_shapes(config).items()
    }


def causal_mask_buffer(n_positions):
    """Build the lower-triangular 0/1 buffer that Hugging Face files store as h.N.attn.bias."""
    return torch.tril(torch.ones(n_positions, n_positions)).view(1, 1, n_positions, n_positions)


def gelu_new(x):
    """GELU, tanh approximation (Hugging Face's gelu_new, GPT-2's activation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_erf(x):
    """Compute the exact GELU with erf. Only the wiring check uses it, as the wrong activation."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def conv1d(x, weight, bias):
    """Apply a Hugging Face Conv1D: weight is [in, out], y = x W + b."""
    return x @ weight + bias


def causal_self_attention(x, params, prefix, config):
    """Multi-head causal self-attention of one block, from ln_1's output to c_proj's output."""
    B, T, C = x.shape
    H = config["n_head"]
    N = C // H
    qkv = conv1d(x, params[prefix + "c_attn.weight"], params[prefix + "c_attn.bias"])  # (B, T, 3C)
    q, k, v = qkv.split(C, dim=2)  # (B, T, C) each, columns q | k | v
    # Head j owns channels [jN, jN + N) of each of q, k, v.
    q = q.view(B, T, H, N).transpose(1, 2)  # (B, H, T, N)
    k = k.view(B, T, H, N).transpose(1, 2)  # (B, H, T, N)
    v = v.view(B, T, H, N).transpose(1, 2)  # (B, H, T, N)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(N)  # (B, H, T, T)
    # Hugging Face fills masked scores with the dtype's most negative finite value, not -inf.
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # (T, T)
    scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, T)
    heads = weights @ v  # (B, H, T, N)
    merged = heads.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return conv1d(merged, params[prefix + "c_proj.weight"], params[prefix + "c_proj.bias"])  # (B, T, C)


def mlp(x, params, prefix, activation):
    """Position-wise MLP of one block: c_fc, activation, c_proj."""
    hidden = activation(conv1d(x, params[prefix + "c_fc.weight"], params[prefix + "c_fc.bias"]))  # (B, T, 4C)
    return conv1d(hidden, params[prefix + "c_proj.weight"], params[prefix + "c_proj.bias"])  # (B, T, C)


def layer_norm(x, params, prefix, config):
    """LayerNorm over channels with biased variance and eps inside the square root."""
    C = x.shape[-1]
    return F.layer_norm(
        x, (C,), params[prefix + "weight"], params[prefix + "bias"], config["layer_norm_epsilon"]
    )


def gpt2_logits(params, input_ids, config, activation=gelu_new):
    """Compute GPT2LMHeadModel's logits (eval mode, no dropout) for input_ids (B, T)."""
    B, T = input_ids.shape
    positions = torch.arange(T)
    h = params["wte.weight"][input_ids] + params["wpe.weight"][positions]  # (B, T, C)
    for layer in range(config["n_layer"]):
        prefix = f"h.{layer}."
        attention_input = layer_norm(h, params, prefix + "ln_1.", config)  # (B, T, C)
        h = h + causal_self_attention(attention_input, params, prefix + "attn.", config)
        mlp_input = layer_norm(h, params, prefix + "ln_2.", config)  # (B, T, C)
        h = h + mlp(mlp_input, params, prefix + "mlp.", activation)
    h = layer_norm(h, params, "ln_f.", config)  # (B, T, C)
    return h @ params["wte.weight"].T  # (B, T, V), head tied to wte


def cross_entropy_loss(logits, targets):
    """Mean cross-entropy over the targets that are not IGNORE_INDEX."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=IGNORE_INDEX)


# ---------------------------------------------------------------------------------------------
# Reference computations


def make_batch():
    """Return (input_ids, targets), both int64 (B, T), where targets are the next tokens."""
    sequences = torch.tensor(TOKEN_SEQUENCES, dtype=torch.int64)  # (B, T + 1)
    input_ids = sequences[:, :-1].clone()  # (B, T)
    targets = sequences[:, 1:].clone()  # (B, T)
    targets[0, -1] = IGNORE_INDEX
    return input_ids, targets


def loss_and_gradients(params, input_ids, targets, config):
    """Return (logits, loss, {name: gradient}) at the given parameters."""
    leaves = {name: value.detach().clone().requires_grad_(True) for name, value in params.items()}
    logits = gpt2_logits(leaves, input_ids, config)
    loss = cross_entropy_loss(logits, targets)
    loss.backward()
    gradients = {name: leaf.grad.detach().clone() for name, leaf in leaves.items()}
    return logits.detach(), loss.detach(), gradients


def adamw_losses(params, input_ids, targets, config):
    """Run ADAMW_STEPS full-batch AdamW steps and return the loss measured before each step."""
    leaves = {name: value.detach().clone().requires_grad_(True) for name, value in params.items()}
    # PyTorch's AdamW: decoupled decay p <- p - lr * weight_decay * p, then the bias-corrected
    # Adam update with eps added to sqrt(v_hat). One parameter group, so every tensor decays.
    optimizer = torch.optim.AdamW(
        list(leaves.values()),
        lr=ADAMW_LR,
        betas=ADAMW_BETAS,
        eps=ADAMW_EPS,
        weight_decay=ADAMW_WEIGHT_DECAY,
    )
    losses = []
    for _ in range(ADAMW_STEPS):
        optimizer.zero_grad()
        loss = cross_entropy_loss(gpt2_logits(leaves, input_ids, config), targets)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    return torch.tensor(losses, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# safetensors writer and an independent reader for the self-check

SAFETENSORS_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}
SAFETENSORS_ITEM_SIZES = {"F32": 4, "I64": 8}


def encode_safetensors(tensors, metadata):
    """Serialise {name: numpy array} to safetensors bytes, tensors in the given order.

    Layout: u64 little-endian header length n, n bytes of JSON (padded with spaces so that n is
    a multiple of 8), then the data section. data_offsets are [begin, end) relative to the
    data section, row-major, little-endian.
    """
    header = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        array = np.array(array, order="C", copy=False)  # ascontiguousarray would turn a scalar into [1]
        dtype = SAFETENSORS_DTYPES.get(array.dtype.newbyteorder("<"))
        if dtype is None:
            raise ValueError(
                f"encode_safetensors: tensor {name!r} has dtype {array.dtype}, "
                f"only {sorted(str(d) for d in SAFETENSORS_DTYPES)} are supported; convert it first"
            )
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(chunks)


def write_safetensors(path, tensors, metadata):
    """Write {name: numpy array} to path as a safetensors file and return its size in bytes."""
    data = encode_safetensors(tensors, metadata)
    path.write_bytes(data)
    return len(data)


def read_safetensors(data):
    """Parse safetensors bytes into ({name: numpy array}, metadata), checking the layout rules.

    Written apart from the writer (its own offsets arithmetic, frombuffer decoding) so the
    round trip tests the file format rather than one function against itself.
    """
    if len(data) < 8:
        raise ValueError(f"read_safetensors: file has {len(data)} bytes, fewer than the 8-byte header length")
    (header_length,) = struct.unpack_from("<Q", data, 0)
    if header_length % 8 != 0:
        raise ValueError(f"read_safetensors: header length {header_length} is not a multiple of 8")
    header = json.loads(data[8 : 8 + header_length].decode("utf-8"))
    data_section = memoryview(data)[8 + header_length :]
    metadata = header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
    expected_begin = 0
    tensors = {}
    for name, entry in entries:
        begin, end = entry["data_offsets"]
        if begin != expected_begin:
            raise ValueError(f"read_safetensors: tensor {name!r} begins at {begin}, expected {expected_begin} (gap or overlap)")
        item_size = SAFETENSORS_ITEM_SIZES[entry["dtype"]]
        expected_bytes = int(np.prod(entry["shape"], dtype=np.int64)) * item_size
        if end - begin != expected_bytes:
            raise ValueError(
                f"read_safetensors: tensor {name!r} data_offsets [{begin}, {end}] cover {end - begin} bytes "
                f"but shape {entry['shape']} {entry['dtype']} needs {expected_bytes}"
            )
        numpy_dtype = "<f4" if entry["dtype"] == "F32" else "<i8"
        values = np.frombuffer(data_section[begin:end], dtype=numpy_dtype)
        tensors[name] = values.reshape(entry["shape"])
        expected_begin = end
    if expected_begin != len(data_section):
        raise ValueError(f"read_safetensors: data section has {len(data_section)} bytes, tensors cover {expected_begin}")
    return tensors, metadata


# ---------------------------------------------------------------------------------------------
# Self-checks. Each raises AssertionError with the values when it fails.


def check_gelu_new_values():
    """Compare gelu_new with reference values computed with numpy (tanh form), within 1e-8."""
    expected = {
        -3.0: -0.003637392,
        -1.0: -0.158808009,
        -0.5: -0.154285990,
        0.5: 0.345714010,
        1.0: 0.841191991,
        3.0: 2.996362608,
    }
    x = torch.tensor(list(expected), dtype=torch.float64)
    got = gelu_new(x)
    for point, value in zip(expected, got.tolist()):
        assert abs(value - expected[point]) < 1e-8, f"gelu_new({point}) = {value}, expected {expected[point]}"


def check_causality(params, input_ids, config):
    """Check that logits at position t do not change when tokens after t change."""
    logits = gpt2_logits(params, input_ids, config)
    changed = input_ids.clone()
    changed[:, 4:] = (changed[:, 4:] + 12345) % config["vocab_size"]
    changed_logits = gpt2_logits(params, changed, config)
    prefix_difference = (logits[:, :4] - changed_logits[:, :4]).abs().max().item()
    suffix_difference = (logits[:, 4:] - changed_logits[:, 4:]).abs().max().item()
    assert prefix_difference == 0.0, f"causality: logits at t < 4 moved by {prefix_difference} when tokens t >= 4 changed"
    assert suffix_difference > 1e-3, f"causality check is vacuous: logits at t >= 4 moved only {suffix_difference}"


def numpy_layer_norm(x, weight, bias, eps):
    mean = x.mean()
    variance = ((x - mean) ** 2).mean()
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def numpy_gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def numpy_sequence_logits(p, ids, config):
    """Compute one sequence's logits in float64, position by position, head by head.

    Written in the row-vector, per-position form of the GPT-2 forward pass, separately from the
    batched torch model, so agreement checks the torch model's reshapes and head split.
    """
    C = config["n_embd"]
    H = config["n_head"]
    N = C // H
    eps = config["layer_norm_epsilon"]
    T = len(ids)
    h = [p["wte.weight"][ids[t]] + p["wpe.weight"][t] for t in range(T)]  # T rows of (C,)
    for layer in range(config["n_layer"]):
        prefix = f"h.{layer}."
        qkv = []
        for t in range(T):
            a = numpy_layer_norm(h[t], p[prefix + "ln_1.weight"], p[prefix + "ln_1.bias"], eps)
            qkv.append(a @ p[prefix + "attn.c_attn.weight"] + p[prefix + "attn.c_attn.bias"])  # (3C,)
        for t in range(T):
            o = np.zeros(C)
            for j in range(H):
                head = slice(j * N, (j + 1) * N)
                q = qkv[t][0:C][head]
                scores = np.array([q @ qkv[u][C : 2 * C][head] / np.sqrt(N) for u in range(t + 1)])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                o[head] = sum(weights[u] * qkv[u][2 * C : 3 * C][head] for u in range(t + 1))
            h[t] = h[t] + o @ p[prefix + "attn.c_proj.weight"] + p[prefix + "attn.c_proj.bias"]
        for t in range(T):
            m = numpy_layer_norm(h[t], p[prefix + "ln_2.weight"], p[prefix + "ln_2.bias"], eps)
            hidden = numpy_gelu_new(m @ p[prefix + "mlp.c_fc.weight"] + p[prefix + "mlp.c_fc.bias"])
            h[t] = h[t] + hidden @ p[prefix + "mlp.c_proj.weight"] + p[prefix + "mlp.c_proj.bias"]
    final = [numpy_layer_norm(h[t], p["ln_f.weight"], p["ln_f.bias"], eps) for t in range(T)]
    return np.stack([row @ p["wte.weight"].T for row in final])  # (T, V)


def check_against_numpy_forward(params, input_ids, logits, config):
    """Check the float32 torch logits against the float64 numpy forward pass, within 1e-5."""
    p = {name: value.double().numpy() for name, value in params.items()}
    difference = 0.0
    for b in range(input_ids.shape[0]):
        expected = numpy_sequence_logits(p, input_ids[b].tolist(), config)  # (T, V)
        difference = max(difference, float(np.abs(logits[b].double().numpy() - expected).max()))
    assert difference < 1e-5, f"numpy forward: max |logits difference| {difference:.3e} exceeds 1e-5"
    return difference


def check_finite_differences(params, input_ids, targets, config):
    """Check float64 autograd gradients against central differences at chosen entries."""
    params64 = {name: value.double() for name, value in params.items()}
    _, _, gradients = loss_and_gradients(params64, input_ids, targets, config)
    C = config["n_embd"]
    in_batch_token = int(input_ids[0, 1])
    probes = [
        ("wte.weight", (in_batch_token, 3)),  # embedding lookup and tied head both contribute
        ("wte.weight", (50256, 0)),
        ("wte.weight", (7, 5)),  # a token absent from the batch: head contribution only
        ("wpe.weight", (2, 9)),
        ("h.0.ln_1.weight", (4,)),
        ("h.0.ln_1.bias", (4,)),
        ("h.0.attn.c_attn.weight", (1, 2)),  # q
        ("h.0.attn.c_attn.weight", (3, C + 20)),  # k, head 1
        ("h.1.attn.c_attn.weight", (5, 2 * C + 7)),  # v
        ("h.1.attn.c_attn.bias", (C + 1,)),  # k bias: softmax ignores it, so the gradient is 0
        ("h.1.attn.c_proj.weight", (6, 11)),
        ("h.1.mlp.c_fc.weight", (2, 100)),
        ("h.1.mlp.c_proj.bias", (31,)),
        ("ln_f.weight", (8,)),
        ("ln_f.bias", (8,)),
    ]
    step = 1e-6
    for name, index in probes:
        shifted = {key: value.clone() for key, value in params64.items()}
        shifted[name][index] += step
        loss_plus = cross_entropy_loss(gpt2_logits(shifted, input_ids, config), targets).item()
        shifted[name][index] -= 2 * step
        loss_minus = cross_entropy_loss(gpt2_logits(shifted, input_ids, config), targets).item()
        numeric = (loss_plus - loss_minus) / (2 * step)
        analytic = gradients[name][index].item()
        tolerance = 1e-7 + 1e-5 * abs(analytic)
        assert abs(numeric - analytic) <= tolerance, (
            f"finite differences: d loss / d {name}{list(index)} autograd {analytic:.9e}, numeric {numeric:.9e}"
        )


def wiring_bug_variants(params, config):
    """Return {description: (params, activation)} for common GPT-2 port mistakes."""
    C = config["n_embd"]
    H = config["n_head"]
    N = C // H
    variants = {}

    def with_changes(change):
        changed = {name: value.clone() for name, value in params.items()}
        change(changed)
        return changed

    def swap_q_and_k(p):
        for layer in range(config["n_layer"]):
            for suffix in ("weight", "bias"):
                w = p[f"h.{layer}.attn.c_attn.{suffix}"]
                q = w[..., 0:C].clone()
                w[..., 0:C] = w[..., C : 2 * C]
                w[..., C : 2 * C] = q

    def interleave_heads(p):
        # Reading head j as channels j, j + H, j + 2H, ... instead of [jN, jN + N).
        order = torch.arange(C).view(N, H).T.reshape(-1)
        full = torch.cat([order, order + C, order + 2 * C])
        for layer in range(config["n_layer"]):
            for suffix in ("weight", "bias"):
                name = f"h.{layer}.attn.c_attn.{suffix}"
                p[name] = p[name][..., full].clone()

    def transpose_square_c_proj(p):
        for layer in range(config["n_layer"]):
            name = f"h.{layer}.attn.c_proj.weight"
            p[name] = p[name].T.clone()

    def scale_scores_by_one_over_n(p):
        # Dividing scores by N instead of sqrt(N) equals scaling q by 1/sqrt(N).
        for layer in range(config["n_layer"]):
            for suffix in ("weight", "bias"):
                p[f"h.{layer}.attn.c_attn.{suffix}"][..., 0:C] /= math.sqrt(N)

    def drop_biases(p):
        for name in p:
            if name.endswith(".bias") and ".ln_" not in name and not name.startswith("ln_f"):
                p[name].zero_()

    def drop_layer_norm_affine(p):
        for name in p:
            if ".ln_" in name or name.startswith("ln_f"):
                p[name].fill_(1.0 if name.endswith(".weight") else 0.0)

    def shift_positions(p):
        p["wpe.weight"] = torch.roll(p["wpe.weight"], shifts=1, dims=0)

    variants["q and k swapped"] = (with_changes(swap_q_and_k), gelu_new)
    variants["heads interleaved"] = (with_changes(interleave_heads), gelu_new)
    variants["square attn.c_proj transposed"] = (with_changes(transpose_square_c_proj), gelu_new)
    variants["scores divided by N"] = (with_changes(scale_scores_by_one_over_n), gelu_new)
    variants["linear biases dropped"] = (with_changes(drop_biases), gelu_new)
    variants["LayerNorm affine dropped"] = (with_changes(drop_layer_norm_affine), gelu_new)
    variants["positions start at 1"] = (with_changes(shift_positions), gelu_new)
    variants["erf GELU"] = (params, gelu_erf)
    return variants


def check_wiring_bugs_move_logits(params, input_ids, logits, config):
    """Check that each wiring bug moves some logit by WIRING_MARGIN x the golden test's tolerance.

    Returns {description: max |logits difference|}. A wrong LayerNorm eps is checked too, through
    a config change.
    """
    movements = {}
    for description, (variant_params, activation) in wiring_bug_variants(params, config).items():
        variant_logits = gpt2_logits(variant_params, input_ids, config, activation)
        movements[description] = (variant_logits - logits).abs().max().item()
    small_eps_config = dict(config, layer_norm_epsilon=1e-12)
    movements["LayerNorm eps 1e-12"] = (gpt2_logits(params, input_ids, small_eps_config) - logits).abs().max().item()
    for description, movement in movements.items():
        assert movement >= WIRING_MARGIN * GOLDEN_LOGITS_ATOL, (
            f"wiring check: bug '{description}' moves the logits by only {movement:.2e}, "
            f"below {WIRING_MARGIN} x {GOLDEN_LOGITS_ATOL}; make the initialisation larger"
        )
    return movements


def check_file_round_trip(path, expected_tensors):
    """Read a written file with the independent reader and compare every tensor bit for bit."""
    tensors, metadata = read_safetensors(path.read_bytes())
    assert metadata == {"format": "pt"}, f"{path.name}: __metadata__ is {metadata}, expected {{'format': 'pt'}}"
    assert set(tensors) == set(expected_tensors), f"{path.name}: names differ: {sorted(set(tensors) ^ set(expected_tensors))}"
    for name, expected in expected_tensors.items():
        assert tensors[name].shape == expected.shape, f"{path.name}: {name} shape {tensors[name].shape}, expected {expected.shape}"
        assert np.array_equal(tensors[name], expected), f"{path.name}: {name} values differ after the round trip"


def float64_gaps(params, input_ids, targets, logits, losses, gradients, config):
    """Measure how far the float32 reference is from the same computation in float64.

    These gaps bound how tightly a float32 engine can be compared with this fixture.
    """
    params64 = {name: value.double() for name, value in params.items()}
    logits64, loss64, gradients64 = loss_and_gradients(params64, input_ids, targets, config)
    losses64 = adamw_losses(params64, input_ids, targets, config)
    gradient_gap_to_max = 0.0
    elements_beyond_relative = 0
    element_count = 0
    for name, gradient in gradients.items():
        difference = (gradient.double() - gradients64[name]).abs()
        gradient_gap_to_max = max(gradient_gap_to_max, (difference.max() / gradients64[name].abs().max()).item())
        elements_beyond_relative += int((difference > GOLDEN_GRADIENT_RTOL * gradients64[name].abs()).sum())
        element_count += difference.numel()
    return {
        "loss64": loss64.item(),
        "logits": (logits.double() - logits64).abs().max().item(),
        "adamw_losses": (losses.double() - losses64).abs().max().item(),
        "gradient_to_max": gradient_gap_to_max,
        "gradient_elements_beyond_rtol": elements_beyond_relative / element_count,
    }


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # one thread keeps the float32 summation order the same run to run
    config = copy.deepcopy(CONFIG)
    params = init_parameters(config, SEED)
    input_ids, targets = make_batch()

    logits, loss, gradients = loss_and_gradients(params, input_ids, targets, config)
    losses = adamw_losses(params, input_ids, targets, config)
    assert abs(losses[0].item() - loss.item()) < 1e-6, f"adamw_losses[0] {losses[0].item()} differs from loss {loss.item()}"

    check_gelu_new_values()
    check_causality(params, input_ids, config)
    numpy_difference = check_against_numpy_forward(params, input_ids, logits, config)
    check_finite_differences(params, input_ids, targets, config)
    movements = check_wiring_bugs_move_logits(params, input_ids, logits, config)
    gaps = float64_gaps(params, input_ids, targets, logits, losses, gradients, config)

    model_tensors = {}
    for name, value in params.items():
        model_tensors[name] = value.numpy()
        if name.endswith(".ln_1.bias"):
            # Each block gets the causal-mask buffer h.N.attn.bias, as Hugging Face's GPT-2 files have.
            model_tensors[name.replace("ln_1.bias", "attn.bias")] = causal_mask_buffer(config["n_positions"]).numpy()
    reference_tensors = {
        "input_ids": input_ids.to(torch.float32).numpy(),  # token ids < 2^24 are exact in F32
        "targets": targets.to(torch.float32).numpy(),
        "logits": logits.numpy(),
        "loss": loss.reshape(()).numpy(),
        "adamw_losses": losses.numpy(),
    }
    for name, gradient in gradients.items():
        reference_tensors["grad." + name] = gradient.numpy()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    config_path = args.out_dir / "config.json"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    sizes = {config_path.name: config_path.stat().st_size}
    for file_name, tensors in (("model.safetensors", model_tensors), ("reference.safetensors", reference_tensors)):
        path = args.out_dir / file_name
        sizes[file_name] = write_safetensors(path, tensors, {"format": "pt"})
        check_file_round_trip(path, tensors)

    print(f"loss {loss.item():.8f} (float64 recomputation {gaps['loss64']:.8f}, ln V = {math.log(config['vocab_size']):.8f})")
    print("adamw_losses " + " ".join(f"{value:.8f}" for value in losses.tolist()))
    print(f"numpy float64 forward vs float32 logits: max |diff| {numpy_difference:.2e}")
    print(
        f"float32 vs float64: logits max |diff| {gaps['logits']:.2e}, adamw_losses max |diff| {gaps['adamw_losses']:.2e}, "
        f"gradients max |diff| / max |g| of the tensor {gaps['gradient_to_max']:.2e}, "
        f"fraction of gradient elements with |diff| > {GOLDEN_GRADIENT_RTOL} |g| {gaps['gradient_elements_beyond_rtol']:.2e}"
    )
    print("logit movement of each wiring bug: " + ", ".join(f"{d} {m:.2e}" for d, m in movements.items()))
    for file_name, size in sizes.items():
        print(f"wrote {args.out_dir / file_name} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the Gemma families share: the turn template, the decoder block's layer names and their Hugging Face names.

Gemma 2 and Gemma 3 decoder blocks hold the same KerasHub layers under the
same names (Gemma 3 adds query/key norms), and transformers names their
modules the same way, so the weight mapping of those layers, the PEFT module
list and the ModelParallel layout are written once here and used by each
family module.

==========================================  ===========================================
KerasHub (decoder_block_i)                   Hugging Face (model.layers.i)
==========================================  ===========================================
token_embedding (vocab, d)                   model.embed_tokens.weight (lm_head tied)
attention.query (heads, d, hd)               self_attn.q_proj.weight (heads*hd, d)
attention.key/value (kv, d, hd)              self_attn.k_proj/v_proj.weight (kv*hd, d)
attention.attention_output (heads, hd, d)    self_attn.o_proj.weight (d, heads*hd)
ffw_gating / ffw_gating_2 / ffw_linear       mlp.gate_proj / up_proj / down_proj (transposed)
pre_attention_norm, post_attention_norm      input_layernorm, post_attention_layernorm
pre_ffw_norm, post_ffw_norm                  pre_feedforward_layernorm, post_feedforward_layernorm
final_normalization                          model.norm.weight
==========================================  ===========================================

Both libraries compute RMSNorm as `x * (1 + scale)` and multiply embeddings
by sqrt(d), so norm scales and embeddings copy over unchanged. Reading a
LoRA-wrapped layer's `.kernel` gives the merged kernel.

Example:
    >>> LORA_TARGET_LAYERS["qv"]
    ('query', 'value')
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Gemma's chat template (the one google/gemma-2-2b-it ships): user/model turns,
# no system role. `apply_chat_template` on it builds exactly the kit's prompt.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

# Layer names inside a Gemma decoder block that are EinsumDense layers, i.e.
# the ones `enable_lora` can wrap (matched by exact layer name).
LORA_TARGET_LAYERS = {
    "qv": ("query", "value"),
    "all": ("query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"),
}

# A row ends at <eos> (always) and at the end of the model's turn.
STOP_PIECES = ("<end_of_turn>",)


def arr(x) -> np.ndarray:
    """A variable's (or array's) value as numpy."""
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def block_weights(block, prefix: str) -> dict[str, np.ndarray]:
    """The Hugging Face tensors of one decoder block's shared layers (see the table above), LoRA merged."""
    att, w = block.attention, {}
    for name, layer in (("q_proj", att.query_dense), ("k_proj", att.key_dense), ("v_proj", att.value_dense)):
        k = arr(layer.kernel)  # (heads, d, head_dim); merged with LoRA when wrapped
        w[prefix + f"self_attn.{name}.weight"] = np.transpose(k, (0, 2, 1)).reshape(-1, k.shape[1])
    o = arr(att.output_dense.kernel)  # (heads, head_dim, d)
    w[prefix + "self_attn.o_proj.weight"] = np.transpose(o, (2, 0, 1)).reshape(o.shape[2], -1)
    w[prefix + "mlp.gate_proj.weight"] = arr(block.gating_ffw.kernel).T
    w[prefix + "mlp.up_proj.weight"] = arr(block.gating_ffw_2.kernel).T
    w[prefix + "mlp.down_proj.weight"] = arr(block.ffw_linear.kernel).T
    w[prefix + "input_layernorm.weight"] = arr(block.pre_attention_norm.scale)
    w[prefix + "post_attention_layernorm.weight"] = arr(block.post_attention_norm.scale)
    w[prefix + "pre_feedforward_layernorm.weight"] = arr(block.pre_ffw_norm.scale)
    w[prefix + "post_feedforward_layernorm.weight"] = arr(block.post_ffw_norm.scale)
    return w


def backbone_weights(backbone, extra=None) -> dict[str, np.ndarray]:
    """Every Hugging Face tensor of a Gemma backbone; `extra(block, prefix)` adds a family's own per block."""
    w = {"model.embed_tokens.weight": arr(backbone.get_layer("token_embedding").embeddings)}
    for i in range(backbone.num_layers):
        block, prefix = backbone.get_layer(f"decoder_block_{i}"), f"model.layers.{i}."
        w.update(block_weights(block, prefix))
        if extra is not None:
            w.update(extra(block, prefix))
    w["model.norm.weight"] = arr(backbone.get_layer("final_normalization").scale)
    return {k: np.ascontiguousarray(v) for k, v in w.items()}


def lora_modules(backbone) -> Iterator[tuple[str, str, object]]:
    """`(HF module path, kind, keras layer)` for every layer that can carry LoRA, in HF order.

    `kind` says how the kernel lays out its input: `heads` (heads, d, head_dim),
    `folded` (heads, head_dim, d: the heads are part of the input) or `dense`.
    """
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"decoder_block_{i}")
        att, p = block.attention, f"model.layers.{i}."
        yield p + "self_attn.q_proj", "heads", att.query_dense
        yield p + "self_attn.k_proj", "heads", att.key_dense
        yield p + "self_attn.v_proj", "heads", att.value_dense
        yield p + "self_attn.o_proj", "folded", att.output_dense
        yield p + "mlp.gate_proj", "dense", block.gating_ffw
        yield p + "mlp.up_proj", "dense", block.gating_ffw_2
        yield p + "mlp.down_proj", "dense", block.ffw_linear


def layout_map(device_mesh, *, model: str = "model", data: str = "batch"):
    """The ModelParallel layout of a Gemma backbone's weights (KerasHub's `GemmaBackbone.get_layout_map`).

    Gemma 3's backbone has no `get_layout_map`; its weights have the same
    names and shapes (its query/key norms are tiny and stay replicated), so
    both families use these rules: embedding rows and the heads/FFN axes on
    `model`, hidden on `data`.

    Example:
        >>> lm_layout = layout_map(mesh)  # doctest: +SKIP
    """
    import keras

    layout = keras.distribution.LayoutMap(device_mesh)
    layout["token_embedding/embeddings"] = (model, data)
    layout["decoder_block.*attention.*(query|key|value).kernel"] = (model, data, None)
    layout["decoder_block.*attention_output.kernel"] = (model, None, data)
    layout["decoder_block.*ffw_gating.kernel"] = (data, model)
    layout["decoder_block.*ffw_gating_2.kernel"] = (data, model)
    layout["decoder_block.*ffw_linear.kernel"] = (model, data)
    return layout


def attention_params(c: dict) -> int:
    """Query, key, value and output projection weights of one block."""
    d, hd = int(c["hidden_dim"]), int(c["head_dim"])
    return d * hd * (2 * int(c["num_query_heads"]) + 2 * int(c["num_key_value_heads"]))

"""The train step's memory levers: the causal-LM loss over sequence chunks, and rematerialised decoder blocks.

Both change how the Engine's loss is computed, never what it computes
(tests compare loss and gradients with the plain path):

* `loss_chunk`: the plain loss builds `(batch, length, vocab)` float32
  logits and their gradient at once: 1 GiB each for Gemma 2 2B (vocabulary
  256,000) at batch 2 × 512. Here the backbone runs to its final hidden
  states, and `jax.lax.map` walks the sequence in chunks of `loss_chunk`
  tokens, applying the tied embedding and the final soft-cap (the very
  layer call `GemmaCausalLM` ends with: `token_embedding(h, reverse=True)`)
  and the token NLL to one chunk at a time. `jax.checkpoint` on the chunk
  makes the backward pass recompute a chunk's logits instead of keeping
  them all, so at most one chunk of logits exists at once.
* `remat`: each decoder block's call is wrapped in `jax.checkpoint`, so the
  backward pass keeps only each block's input and recomputes the rest
  (about one extra forward pass). `keras.RematScope` would do the same, but
  it takes effect when a layer is constructed (`Operation.__init__` reads
  it), so it cannot be switched on for a model already loaded from a preset
  or built by another stage; wrapping the call here works for any model and
  keeps the choice with the step.

When either lever is on, the forward pass runs the backbone's layers
itself (`token_embedding` times sqrt(hidden), the `transformer_layers`,
`layer_norm`, as `GemmaBackbone` and the text path of `Gemma3Backbone` wire
them; Gemma 3's blocks also take a `vision_mask`, None for text, which is all
the kit trains on) inside a `keras.StatelessScope` that maps every variable
to the step's values, exactly as `Model.stateless_call` does. Gemma 3 has no
final soft-cap: its `token_embedding(h, reverse=True)` is the plain tied
projection, which the chunked loss calls the same way.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import keras

import kit  # noqa: F401
from kit.errors import UserError
from kit.metrics.perplexity import token_nll

# `train.loss_chunk` applies only from this vocabulary size up: below it the
# logits are small next to the activations and a chunked loop only costs time.
LOSS_CHUNK_MIN_VOCAB = 32_768
# `train.remat = "auto"` turns block rematerialisation on for a model above REMAT_AUTO_PARAMS
# parameters whose micro-batch (rows x longest bucket) holds at least REMAT_AUTO_TOKENS tokens.
# Measured with `kit plan` (docs/plan.md, "Remat"): for Gemma 2 2B at 2 x 512 tokens remat
# saves nothing (+0.04 GiB) for +41 % FLOPs; at 8 x 512 and 16 x 512 it cuts the v5e-1
# temporaries by several GiB, which is where a 16 GiB chip needs it.
REMAT_AUTO_PARAMS = 1e9
REMAT_AUTO_TOKENS = 4096


def resolve_loss_chunk(loss_chunk: int, vocabulary_size: int) -> int:
    """The chunk length the step uses: `loss_chunk`, or 0 (off) for a small vocabulary.

    Example:
        >>> resolve_loss_chunk(256, 256_000), resolve_loss_chunk(256, 4096), resolve_loss_chunk(0, 256_000)
        (256, 0, 0)
    """
    return loss_chunk if loss_chunk and vocabulary_size >= LOSS_CHUNK_MIN_VOCAB else 0


def resolve_remat(remat: str, parameters: int, tokens: int) -> bool:
    """Whether to rematerialise the decoder blocks: `blocks` yes, `off` no, `auto` where it saves memory.

    `auto` is on for a model above `REMAT_AUTO_PARAMS` parameters whose
    micro-batch holds at least `REMAT_AUTO_TOKENS` tokens (`tokens` = rows x
    longest bucket): below that the recomputation costs about a third more
    FLOPs and frees nothing measurable.

    Example:
        >>> resolve_remat("auto", 2_614_341_888, 8 * 512), resolve_remat("auto", 2_614_341_888, 2 * 512)
        (True, False)
        >>> resolve_remat("auto", 1_000_000, 10**6), resolve_remat("blocks", 10, 1), resolve_remat("off", 10**10, 10**6)
        (False, True, False)
    """
    if remat == "auto":
        return parameters > REMAT_AUTO_PARAMS and tokens >= REMAT_AUTO_TOKENS
    return remat == "blocks"


def hidden_states(backbone, x: dict, *, remat: bool = False):
    """The backbone's final (normalised) hidden states, each decoder block under `jax.checkpoint` when `remat`.

    Call it inside a `keras.StatelessScope` (as `lean_loss` does) to run on
    given variable values.

    Example:
        >>> h = hidden_states(lm.backbone, batch.x, remat=True)  # doctest: +SKIP
    """
    if not remat:
        return backbone(x)
    h = backbone.token_embedding(x["token_ids"])
    h = h * keras.ops.cast(keras.ops.sqrt(backbone.hidden_dim), h.dtype)  # as both Gemma backbones scale it
    mask = x["padding_mask"]
    for block in backbone.transformer_layers:
        h = jax.checkpoint(lambda h, m, block=block: block(h, padding_mask=m))(h, mask)
    return backbone.layer_norm(h)


def chunked_nll_sum(embedding, h, y, w, chunk: int):
    """`sum(token_nll(embedding(h, reverse=True), y) * w)` computed `chunk` positions at a time.

    The sequence is padded (weight 0) to a multiple of `chunk`; each chunk's
    logits are recomputed in the backward pass (`jax.checkpoint`), so the
    full `(batch, length, vocab)` logits never exist.

    Example:
        >>> loss = chunked_nll_sum(lm.backbone.token_embedding, h, y, w, 128)  # doctest: +SKIP
    """
    b, length, d = h.shape
    n = math.ceil(length / chunk)
    pad = n * chunk - length
    if pad:
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        y = jnp.pad(y, ((0, 0), (0, pad)))
        w = jnp.pad(w, ((0, 0), (0, pad)))

    def split(a):  # (batch, n * chunk, ...) -> (n, batch, chunk, ...)
        return jnp.swapaxes(a.reshape(b, n, chunk, *a.shape[2:]), 0, 1)

    @jax.checkpoint
    def one(args):
        hc, yc, wc = args
        return jnp.sum(token_nll(embedding(hc, reverse=True), yc) * wc)

    return jnp.sum(jax.lax.map(one, (split(h), split(y), split(w))))


def lean_loss(
    lm,
    trainable,
    non_trainable,
    tv,
    ntv,
    x,
    y,
    w,
    *,
    loss_chunk: int = 0,
    remat: bool = False,
    unlikelihood=None,
):
    """The Engine's weighted loss sums and weight sum, with the chunked loss and/or block remat.

    Args:
        lm: The `GemmaCausalLM`.
        trainable, non_trainable: Its variables, in the order of `tv`, `ntv`.
        tv, ntv: Their values in this step.
        x, y, w: The batch: inputs, next-token targets, per-token weights.
        loss_chunk: Positions per loss chunk (0: the whole sequence at once).
        remat: Rematerialise the decoder blocks.
        unlikelihood: Also sum these unlikelihood terms (a
            `kit.train.unlikelihood.Unlikelihood`, or None); they need the
            full logits, so not with `loss_chunk`.

    Returns:
        `(sum of weighted token NLLs, sum of weighted unlikelihoods or 0, sum of weights)`, all float32.

    Example:
        >>> lean_loss(lm, tr, ntr, tv, ntv, x, y, w, loss_chunk=128)  # doctest: +SKIP
    """
    mapping = list(zip(trainable, tv, strict=True)) + list(zip(non_trainable, ntv, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        h = hidden_states(lm.backbone, x, remat=remat)
        embedding = lm.backbone.token_embedding
        ul = jnp.float32(0.0)
        if loss_chunk:
            if unlikelihood is not None:
                raise ValueError("unlikelihood needs the full logits: it cannot be combined with loss_chunk")
            total = chunked_nll_sum(embedding, h, y, w, loss_chunk)
        else:
            logits = embedding(h, reverse=True)
            total = jnp.sum(token_nll(logits, y) * w)
            if unlikelihood is not None:
                ul = unlikelihood(logits, y, w)
    return total, ul, jnp.sum(w)


def step_levers(train, lm, length: int) -> dict:
    """The Engine's `loss_chunk`, `remat` and unlikelihood levers for a `TrainConfig`, a model and its longest bucket, resolved.

    Raises `UserError` for `train.unlikelihood` on a model whose loss is
    chunked (it needs the full logits: `kit.train.unlikelihood`).

    Example:
        >>> Engine(lm, optimizer, **step_levers(cfg.train, lm, cfg.data.buckets[-1]))  # doctest: +SKIP
    """
    parameters = sum(math.prod(int(d) for d in v.shape) for v in lm.backbone.weights)
    vocabulary_size = int(lm.backbone.vocabulary_size)
    loss_chunk = resolve_loss_chunk(train.loss_chunk, vocabulary_size)
    for key in ("unlikelihood", "unlikelihood_sentences"):
        if getattr(train, key) and loss_chunk:
            raise UserError(
                f"train.{key} = {getattr(train, key)} needs the full logits, but this model's "
                f"{vocabulary_size:,}-token vocabulary has the loss chunked (train.loss_chunk = {train.loss_chunk}). "
                f"Set train.{key} = 0, or train.loss_chunk = 0 if the full logits fit in memory."
            )
    return {
        "loss_chunk": loss_chunk,
        "remat": resolve_remat(train.remat, parameters, int(train.batch_size) * int(length)),
        "unlikelihood": float(train.unlikelihood),
        "unlikelihood_context": int(train.unlikelihood_context),
        "unlikelihood_sentences": float(train.unlikelihood_sentences),
    }

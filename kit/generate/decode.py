"""The decode loop over the KV cache: prefill once, then tokens in chunks until every row is done.

KerasHub's `generate` runs one compiled program from prompt to the end and has
no way to hand tokens out while it runs (keras-hub#976). `Decoder` splits the
same computation in two compiled programs built from the public API
(`CausalLM.call_with_cache`, `Sampler.compute_probabilities` and
`Sampler.get_next_token`, `keras.StatelessScope`):

* `prefill`: one forward pass over the padded prompt rows fills the cache;
* `loop`: at most `steps` decode steps in an XLA while loop that also ends
  as soon as every row is done. A row is done when it has written a stop id
  or `limit` new tokens, so a batch no longer runs to the end of its length
  bucket once its rows have stopped.

`steps` and `limit` are arguments, not constants, so the batch path (one call,
all steps) and streaming (a few tokens per call) share one program per length
bucket, batch size and sampler. The model's weights, the sampler's seed state,
the cache and the tokens are all passed in and returned: a `DecodeState`
belongs to its caller, so several streams can take turns on one model, and a
LoRA adapter can be swapped in per call by passing other values for the
adapter variables (`Decoder.state(overrides)`).

Each step draws from the sampler exactly as KerasHub's loop does (one
`get_next_token` per step from the shortest prompt's end, prompt positions
kept), so for the same seed the text is the one `generate` gave. A model
whose `call_with_cache` takes a `padding_mask` and a `cache_update_mask`
(Gemma 3's) gets them as its own `generate_step` passes them: the prefill
sees the padding, and a step at a prompt position of a longer row leaves
that row's keys and values from the prefill in the cache. Recomputed one
token at a time they differ from the prefill's in the last float bits
(measured: up to 4e-6 on the micro Gemma 3), which can flip a near tie.
Gemma 2's `call_with_cache` takes neither, and its `generate_step`
rewrites those positions too, as the loop then does.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import time

import numpy as np

import kit  # noqa: F401  (KERAS_BACKEND before keras)
from kit.families import family_of

# Samplers whose tokens are one `get_next_token` per step: these run in the
# kit's loop (and stream). Beam and contrastive search re-rank or look back,
# so they keep KerasHub's own loop.
STEPWISE = ("greedy", "top_k", "top_p", "random")


@dataclasses.dataclass
class DecodeState:
    """One batch in flight: its tokens, cache, next position and seed state (numpy or device arrays).

    Attributes:
        token_ids: (batch, length) prompt rows padded with 0; new tokens are written in place.
        padding_mask: True on prompt tokens.
        cache: The KV cache of every layer.
        index: The next position to write (the shortest prompt's length at the start).
        seed: The sampler's seed state (one array per `SeedGenerator`).
        limit: New tokens per row at most.
        stops: The stop token ids.
        done: Whether every row has stopped or reached `limit` (or the bucket is full).
        steps: Decode steps run so far.
    """

    token_ids: object
    padding_mask: object
    cache: object
    index: int
    seed: list
    limit: int
    stops: object
    done: bool = False
    steps: int = 0

    def tokens(self) -> np.ndarray:
        """The token rows as numpy (prompt + what has been written so far)."""
        return np.asarray(self.token_ids)


class Decoder:
    """The compiled prefill and decode-loop programs of one causal LM, shared by every adapter on it.

    Args:
        lm: A KerasHub Gemma causal LM (any family in `kit.families`).

    Example:
        >>> dec = Decoder(lm)  # doctest: +SKIP
        >>> ds = dec.start(dec.state(), spec, token_ids, mask, seed=0, stream=0, limit=32, stops=(1, 107))  # doctest: +SKIP
        >>> dec.advance(dec.state(), spec, ds, steps=4).index  # doctest: +SKIP
    """

    def __init__(self, lm):
        import jax

        self.lm = lm
        self.family = family_of(lm)  # its KV-cache layout differs by family
        # The masks this model's cached call takes (Gemma 3: both; Gemma 2: neither); see the module docstring.
        takes = inspect.signature(lm.call_with_cache).parameters
        self.prefill_sees_padding = "padding_mask" in takes
        self.keeps_prompt_cache = "cache_update_mask" in takes
        self.traces = 0  # decode programs traced (compiled): one per bucket, batch size and sampler
        self.compiled: set[tuple] = set()  # (length, batch size, sampler key) already compiled
        self.compile_seconds: list[float] = []  # wall time of each first call (compile + run)
        self._samplers: dict[tuple, tuple] = {}  # sampler key -> (keras sampler, jitted loop)
        self._prefill = jax.jit(self._prefill_fn)

    # ------------------------------------------------------------------ state

    def state(self, overrides: dict[str, object] | None = None) -> tuple[list, list]:
        """The model's variable values, with `overrides` (variable path -> array) swapped in."""
        overrides = overrides or {}
        return (
            [overrides.get(v.path, v.value) for v in self.lm.trainable_variables],
            [overrides.get(v.path, v.value) for v in self.lm.non_trainable_variables],
        )

    def _mapping(self, state, sampler=None, seed=()):
        trainable, non_trainable = state
        pairs = [
            zip(self.lm.trainable_variables, trainable, strict=True),
            zip(self.lm.non_trainable_variables, non_trainable, strict=True),
        ]
        if sampler is not None:
            pairs.append(zip(sampler.variables, seed, strict=True))
        return itertools.chain(*pairs)

    # ------------------------------------------------------------------ programs

    def _prefill_fn(self, state, token_ids, padding_mask):
        import keras

        backbone = self.lm.backbone
        batch, length = token_ids.shape
        with keras.StatelessScope(state_mapping=self._mapping(state)):
            cache = self.family.empty_cache(backbone, batch, length, self.lm.compute_dtype)
            masks = {"padding_mask": padding_mask} if self.prefill_sees_padding else {}
            _, _, cache = self.lm.call_with_cache(token_ids, cache, 0, **masks)
        return cache

    def _loop_fn(self, sampler, state, seed, token_ids, padding_mask, cache, index, limit, steps, stops):
        import jax
        import jax.numpy as jnp
        import keras

        self.traces += 1  # runs only while JAX traces a new program
        batch, length = token_ids.shape
        row_len = jnp.sum(padding_mask.astype("int32"), axis=-1)
        positions = jnp.arange(length)[None, :]
        stops = stops.astype(token_ids.dtype)

        def all_done(tokens, index):
            written = (positions >= row_len[:, None]) & (positions < index)
            stopped = jnp.any(written & jnp.isin(tokens, stops), axis=-1)
            return jnp.all(stopped | (index - row_len >= limit))

        def cond(carry):
            tokens, _, index, _, n = carry
            return (n < steps) & (index < length) & ~all_done(tokens, index)

        def body(carry):
            tokens, cache, index, seed, n = carry
            with keras.StatelessScope(state_mapping=self._mapping(state, sampler, seed)) as scope:
                last = jax.lax.dynamic_slice(tokens, (0, index - 1), (batch, 1))
                masks = {}
                if self.keeps_prompt_cache:  # write keys/values only where the row has no prompt token
                    prompt = jax.lax.dynamic_slice(padding_mask, (0, index - 1), (batch, 1)).astype(bool)
                    masks["cache_update_mask"] = ~prompt
                logits, _, cache = self.lm.call_with_cache(last, cache, index - 1, **masks)
                probabilities = sampler.compute_probabilities(logits[:, 0, :])
                token = sampler.get_next_token(probabilities)
                seed = [
                    new if (new := scope.get_current_value(v)) is not None else old
                    for v, old in zip(sampler.variables, seed, strict=True)
                ]
            token = jnp.asarray(token).astype(tokens.dtype).reshape(batch)
            # Rows whose prompt is longer than the shortest keep their prompt tokens.
            keep = jax.lax.dynamic_slice(padding_mask, (0, index), (batch, 1))[:, 0]
            current = jax.lax.dynamic_slice(tokens, (0, index), (batch, 1))[:, 0]
            token = jnp.where(keep, current, token)
            tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, index))
            return tokens, cache, index + 1, seed, n + 1

        carry = (token_ids, cache, jnp.asarray(index, "int32"), list(seed), jnp.asarray(0, "int32"))
        tokens, cache, index, seed, _ = jax.lax.while_loop(cond, body, carry)
        done = (index >= length) | all_done(tokens, index)
        return tokens, cache, index, seed, done

    def _sampler(self, spec):
        import jax

        key = spec.key()
        if key not in self._samplers:
            sampler = spec.build()
            loop = jax.jit(lambda *args, _s=sampler: self._loop_fn(_s, *args))
            self._samplers[key] = (sampler, loop)
        return self._samplers[key]

    # ------------------------------------------------------------------ running

    def start(self, state, spec, token_ids, padding_mask, *, seed: int, stream: int, limit: int, stops) -> DecodeState:
        """Fill the cache for a batch of prompt rows; no token is written yet.

        Args:
            state: `Decoder.state(...)`.
            spec: A stepwise `SamplerSpec` (see `STEPWISE`).
            token_ids: (batch, length) int32, prompts left-aligned and padded with 0.
            padding_mask: True on prompt tokens.
            seed: The sampler seed.
            stream: Which random stream of that seed (the batch index), so batches start far apart.
            limit: New tokens per row at most.
            stops: Token ids that end a row (`Generator.stop_ids`, the one place that picks them).
        """
        sampler, _ = self._sampler(spec)
        # SeedGenerator state is [seed, counter]: the counter advances by one
        # per token, so streams start 2**20 tokens apart.
        seeds = [np.asarray([seed, stream << 20], dtype=v.dtype) for v in sampler.variables]
        cache = self._prefill(state, token_ids, padding_mask)
        index = int(np.asarray(padding_mask).sum(axis=-1).min())
        return DecodeState(token_ids, padding_mask, cache, index, seeds, limit, np.asarray(stops, dtype=np.int32))

    def advance(self, state, spec, ds: DecodeState, steps: int) -> DecodeState:
        """Run up to `steps` more decode steps on `ds` (fewer if every row is done first)."""
        if ds.done:
            return ds
        _, loop = self._sampler(spec)
        batch, length = ds.token_ids.shape
        key = (length, batch, spec.key())
        first = key not in self.compiled
        t0 = time.perf_counter()
        tokens, cache, index, seed, done = loop(
            state, ds.seed, ds.token_ids, ds.padding_mask, ds.cache, ds.index, ds.limit, steps, ds.stops
        )
        index = int(index)  # waits for the device: the tokens are ready
        if first:
            self.compiled.add(key)
            self.compile_seconds.append(time.perf_counter() - t0)
        ds.steps += index - ds.index
        ds.token_ids, ds.cache, ds.index, ds.seed, ds.done = tokens, cache, index, seed, bool(done)
        return ds

    def is_compiled(self, length: int, batch: int, spec) -> bool:
        """Whether the decode loop for this bucket length, batch size and sampler is compiled already."""
        return (length, batch, spec.key()) in self.compiled

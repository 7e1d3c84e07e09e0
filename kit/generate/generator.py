"""Validated requests in, reviews out: batched, seeded generation with fixed compile shapes.

`Generator` wraps a loaded `GemmaCausalLM` (a run dir, base or adapter, or any
preset) and calls its compiled generate function directly on numpy batches:

* Prompts come from THE template (`Request.prompt`) and are tokenised with
  SentencePiece exactly as in training (`<bos>` + prompt), so no TensorFlow
  preprocessing runs.
* XLA compiles one program per input shape and sampler. Rows (requests x
  samples) are padded to a batch size from `batch_sizes` and to a total
  length from `length_buckets`, so new requests of other lengths reuse the
  programs already compiled (`Generator.traces` counts compilations).
* Each sampler configuration keeps its own compiled function (the
  temperature and k/p are baked into the program); the seed is not: it is
  written into the sampler's `SeedGenerator` state before each batch, so the
  same seed gives the same text without a recompile.
* Generation stops on `<end_of_turn>` or `<eos>` (both passed as stop ids);
  each sample is cut to `max_new_tokens`, the prompt is stripped
  (`extract_response`) and TSKV escapes (a literal `\\n`) are decoded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import kit  # noqa: F401
from kit.data.prompt import END_OF_TURN, extract_response
from kit.data.tskv import unescape
from kit.errors import UserError
from kit.generate.request import Request
from kit.generate.sampler import CONTEXT_TOKENS, GenerateOptions, SamplerSpec

LENGTH_BUCKETS = (128, 256, 512, 1024, 2048, CONTEXT_TOKENS)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated review.

    Attributes:
        text: The review (prompt stripped, escapes decoded).
        new_tokens: Tokens generated, stop token excluded.
        stopped: True if the model ended the review itself (a stop token), False if cut at the length limit.
    """

    text: str
    new_tokens: int
    stopped: bool


class Generator:
    """A loaded causal LM plus its compiled generate programs, reused across calls.

    Args:
        lm: A `keras_hub.models.GemmaCausalLM` (e.g. from `load_model`).
        batch_size: Largest batch per call; smaller batches are padded up to a power of two.
        length_buckets: Allowed total lengths (prompt + new tokens), ascending.

    Example:
        >>> gen = Generator(load_model("runs/tiny-lora"))  # doctest: +SKIP
        >>> req = Request.create(rubrics="Кафе", rating=5, keywords="кофе")  # doctest: +SKIP
        >>> gen.generate([req], SamplerSpec(name="top_p", seed=1), n=2)[0][0].text  # doctest: +SKIP
        'Уютное кафе, вкусный кофе...'
    """

    def __init__(self, lm, *, batch_size: int = 8, length_buckets: Sequence[int] = LENGTH_BUCKETS):
        from kit.data.batching import Encoder

        if batch_size < 1:
            raise UserError(f"batch_size must be ≥ 1. Received: batch_size={batch_size}")
        self.lm = lm
        self.encoder = Encoder(lm.preprocessor.tokenizer.proto)
        self.stop_ids = self._stop_ids()
        self.batch_size = batch_size
        self.batch_sizes = sorted({min(2**i, batch_size) for i in range(batch_size.bit_length() + 1)})
        self.length_buckets = tuple(sorted(length_buckets))
        self.traces = 0
        self._programs: dict[tuple, tuple] = {}
        generate_step = lm.generate_step

        def counted_generate_step(*args, **kwargs):
            # Runs only while JAX traces (i.e. compiles) a new program.
            self.traces += 1
            return generate_step(*args, **kwargs)

        lm.generate_step = counted_generate_step

    def _stop_ids(self) -> tuple[int, ...]:
        sp = self.encoder.sp
        ids = [sp.eos_id()]
        eot = sp.piece_to_id(END_OF_TURN)
        if eot != sp.unk_id():  # a tokenizer without turn markers maps it to <unk>
            ids.append(eot)
        return tuple(ids)

    def generate(
        self,
        requests: Sequence[Request],
        sampler: SamplerSpec = SamplerSpec(),
        *,
        n: int = 1,
        max_new_tokens: int = GenerateOptions.max_new_tokens,
    ) -> list[list[Sample]]:
        """`n` reviews for each request, all requests in as few batched calls as possible.

        Returns:
            One list of `n` `Sample`s per request, in request order.
        """
        return self.complete([r.prompt() for r in requests], sampler, n=n, max_new_tokens=max_new_tokens)

    def complete(
        self,
        prompts: Sequence[str],
        sampler: SamplerSpec = SamplerSpec(),
        *,
        n: int = 1,
        max_new_tokens: int = GenerateOptions.max_new_tokens,
    ) -> list[list[Sample]]:
        """Like `generate`, for ready prompts (e.g. the `prompt` column of a prepared split)."""
        if n < 1:
            raise UserError(f"n (samples per request) must be ≥ 1. Received: n={n}")
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be ≥ 1. Received: max_new_tokens={max_new_tokens}")
        encoded = [[self.encoder.bos_id, *self.encoder.sp.encode(p)] for p in prompts]
        check_room(max((len(ids) for ids in encoded), default=0), max_new_tokens, self.length_buckets[-1])
        rows = [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)]
        out: list[list[Sample]] = [[] for _ in prompts]
        for b, start in enumerate(range(0, len(rows), self.batch_size)):
            chunk = rows[start : start + self.batch_size]
            for (i, ids), generated in zip(chunk, self._run(chunk, sampler, b, max_new_tokens), strict=True):
                out[i].append(self._decode(prompts[i], generated, len(ids), max_new_tokens))
        return out

    def _run(self, chunk, sampler: SamplerSpec, batch_index: int, max_new_tokens: int) -> np.ndarray:
        longest = max(len(ids) for _, ids in chunk)
        length = self.bucket_length(longest, max_new_tokens)
        size = next(s for s in self.batch_sizes if s >= len(chunk))
        token_ids = np.zeros((size, length), dtype=np.int32)
        padding_mask = np.zeros((size, length), dtype=bool)
        for r in range(size):
            # Pad the batch with copies of the last real row: a real prompt keeps
            # the first generated position (the shortest prompt) where it was.
            ids = chunk[min(r, len(chunk) - 1)][1]
            token_ids[r, : len(ids)] = ids
            padding_mask[r, : len(ids)] = True
        function = self._program(sampler)
        for variable in self.lm.sampler.variables:  # SeedGenerator state: [seed, counter]
            # One stream per batch: the counter advances by one per token, so
            # batches start far apart instead of one token apart.
            variable.assign(np.asarray([sampler.seed, batch_index << 20], dtype=variable.dtype))
        outputs = function({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=self.stop_ids)
        return np.asarray(outputs["token_ids"])[: len(chunk)]

    def bucket_length(self, prompt_tokens: int, max_new_tokens: int) -> int:
        """The compiled total length for a batch whose longest prompt has `prompt_tokens` tokens."""
        return pick_length(self.length_buckets, prompt_tokens, max_new_tokens)

    def _program(self, sampler: SamplerSpec):
        key = sampler.key()
        if key not in self._programs:
            self.lm.sampler = sampler.build()
            self.lm.generate_function = None
            self._programs[key] = (self.lm.sampler, self.lm.make_generate_function())
        self.lm.sampler, function = self._programs[key]
        self.lm.generate_function = function
        return function

    def _decode(self, prompt: str, row: np.ndarray, n_prompt: int, max_new_tokens: int) -> Sample:
        new = [int(t) for t in row[n_prompt : n_prompt + max_new_tokens]]
        stop = next((j for j, t in enumerate(new) if t in self.stop_ids), None)
        if stop is not None:
            new = new[:stop]
        # Embedding tables may be padded past the tokenizer (the tiny base rounds
        # to a multiple of 64); such ids have no text, so they are dropped.
        size = self.encoder.sp.get_piece_size()
        text = extract_response(prompt + self.encoder.sp.decode([t for t in new if t < size]))
        # A byte-fallback piece cut from its neighbours decodes to U+FFFD: no text for a reader.
        text = text.replace("\ufffd", "")
        return Sample(text=unescape(text), new_tokens=len(new), stopped=stop is not None)


def enable_compile_cache(path: str | None = None) -> str | None:
    """Keep compiled XLA programs on disk so the next process skips compilation.

    Model loading and each generate shape compile once per machine instead of
    once per command (seconds each on a CPU, minutes for Gemma 2 2B on TPU).
    `KIT_JAX_CACHE=off` disables it; `KIT_JAX_CACHE=DIR` moves it.

    Example:
        >>> enable_compile_cache("off") is None
        True
    """
    import jax

    path = path or os.environ.get("KIT_JAX_CACHE") or str(Path.home() / ".cache" / "geo-reviews-kit" / "jax")
    if path.lower() in ("off", "0", "none", ""):
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def check_room(prompt_tokens: int, max_new_tokens: int, context: int = CONTEXT_TOKENS) -> None:
    """Refuse a `max_new_tokens` that does not fit in `context` after the longest prompt (before generating).

    Raises:
        UserError: naming the value and the allowed range.

    Example:
        >>> check_room(96, 4001)
        Traceback (most recent call last):
        ...
        kit.errors.UserError: --max-new-tokens 4001 does not fit: the longest prompt takes 96 of the 4096-token context, so the allowed range is 1 to 4000.
    """
    room = context - prompt_tokens
    if prompt_tokens and max_new_tokens > room:
        if room < 1:
            raise UserError(
                f"The prompt is {prompt_tokens} tokens, the whole {context}-token context; shorten the name, "
                "address or keywords."
            )
        raise UserError(
            f"--max-new-tokens {max_new_tokens} does not fit: the longest prompt takes {prompt_tokens} of the "
            f"{context}-token context, so the allowed range is 1 to {room}."
        )


def pick_length(buckets: Sequence[int], prompt_tokens: int, max_new_tokens: int) -> int:
    """The smallest bucket that fits prompt + new tokens (the largest if none does).

    Example:
        >>> pick_length((128, 256, 512), 60, 100), pick_length((128, 256), 60, 900)
        (256, 256)
    """
    need = prompt_tokens + max_new_tokens
    for length in buckets:
        if length >= need:
            return length
    if prompt_tokens < buckets[-1]:
        return buckets[-1]  # fewer new tokens than asked; the review may be cut at the limit
    raise UserError(
        f"The prompt is {prompt_tokens} tokens, longer than the largest length bucket "
        f"{buckets[-1]}; shorten the name, address or keywords."
    )

"""Validated requests in, reviews out: batched, seeded generation with fixed compile shapes.

`Generator` wraps a loaded Gemma causal LM (`GemmaCausalLM` or `Gemma3CausalLM`:
a run dir, base or adapter, or any preset) and runs the kit's decode loop
(`kit.generate.decode`) on numpy batches:

* Prompts come from THE template (`Request.prompt`) and are tokenised with
  SentencePiece exactly as in training (`<bos>` + prompt), so no TensorFlow
  preprocessing runs.
* XLA compiles one program per input shape and sampler. Rows (requests x
  samples) are padded to a batch size from `batch_sizes` and to a total
  length from `length_buckets`, so new requests of other lengths reuse the
  programs already compiled (`Generator.traces` counts compilations).
* Each sampler configuration keeps its own compiled program (the
  temperature and k/p are baked into it); the seed is not: it is passed in
  as the sampler's `SeedGenerator` state for each batch, so the same seed
  gives the same text without a recompile.
* A row is done at `<end_of_turn>` or `<eos>` (both are stop ids) or after
  `max_new_tokens`; decoding ends when every row of the batch is done. The
  prompt is stripped (`extract_response`) and TSKV escapes (a literal
  `\\n`) are decoded.
* `Generator.stream` yields a review's text while it is written, from the same
  programs, so a stream gives the text the batch path gives.
* Beam and contrastive search keep KerasHub's own generate program.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

import kit  # noqa: F401
from kit.data.prompt import extract_response
from kit.data.tskv import unescape
from kit.errors import UserError
from kit.generate.decode import STEPWISE, Decoder, DecodeState
from kit.generate.request import Request
from kit.generate.sampler import CONTEXT_TOKENS, GenerateOptions, SamplerSpec

LENGTH_BUCKETS = (128, 256, 512, 1024, 2048, CONTEXT_TOKENS)
# A stream's pieces come about this often: each call of the decode loop has a
# fixed cost (milliseconds), so pieces of one token would slow a fast model down.
CHUNK_SECONDS = 0.1


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
    """A loaded causal LM plus its compiled decode programs, reused across calls.

    Args:
        lm: A KerasHub Gemma 2 or Gemma 3 causal LM (e.g. from `load_model`).
        batch_size: Largest batch per call; smaller batches are padded up to a power of two.
        length_buckets: Allowed total lengths (prompt + new tokens), ascending.
        adapter: Values for the model's LoRA variables (variable path -> array), passed into
            every call instead of the variables' own: how runs that share one base
            (`kit.generate.pool.SharedBase`) each get their adapter.
        decoder: The model's `Decoder` when several generators share one model (and its programs).
        lock: The model's lock, shared by every generator on the model: a batch holds it for the
            whole call, a stream for each chunk of tokens.
        name: What to call the model in messages.

    Example:
        >>> gen = Generator(load_model("runs/tiny-lora"))  # doctest: +SKIP
        >>> req = Request.create(rubrics="Кафе", rating=5, keywords="кофе")  # doctest: +SKIP
        >>> gen.generate([req], SamplerSpec(name="top_p", seed=1), n=2)[0][0].text  # doctest: +SKIP
        'Уютное кафе, вкусный кофе...'
        >>> "".join(gen.stream(req, SamplerSpec(name="greedy")))  # doctest: +SKIP
        'Уютное кафе...'
    """

    def __init__(
        self,
        lm,
        *,
        batch_size: int = 8,
        length_buckets: Sequence[int] = LENGTH_BUCKETS,
        adapter: dict | None = None,
        decoder: Decoder | None = None,
        lock: threading.Lock | None = None,
        name: str = "the model",
    ):
        from kit.data.batching import Encoder

        if batch_size < 1:
            raise UserError(f"batch_size must be ≥ 1. Received: batch_size={batch_size}")
        self.lm = lm
        self.encoder = Encoder(lm.preprocessor.tokenizer.proto)
        # A copy per generator: a benchmark or test may stop on other ids for one model.
        self.stop_ids = self.encoder.stop_ids
        self.batch_size = batch_size
        self.batch_sizes = sorted({min(2**i, batch_size) for i in range(batch_size.bit_length() + 1)})
        self.length_buckets = tuple(sorted(length_buckets))
        self.adapter = adapter
        self.decoder = decoder or Decoder(lm)
        self.lock = lock or threading.Lock()
        self.name = name
        self.closed = False  # set when the model is unloaded (`SharedBase.close`)
        self.last_steps: list[int] = []  # decode steps of each batch of the last `generate` call
        self._programs: dict[tuple, tuple] = {}
        if not getattr(lm, "_kit_counted", False):
            generate_step = lm.generate_step
            decoder_ref = self.decoder

            def counted_generate_step(*args, **kwargs):
                # Runs only while JAX traces (i.e. compiles) a KerasHub generate program.
                decoder_ref.traces += 1
                return generate_step(*args, **kwargs)

            lm.generate_step = counted_generate_step
            lm._kit_counted = True

    @property
    def traces(self) -> int:
        """Decode programs compiled so far on this model (one per bucket, batch size and sampler)."""
        return self.decoder.traces

    def _check_open(self) -> None:
        if self.closed:
            raise UserError(f"{self.name} was unloaded to make room for another model; generate again to reload it.")

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
        _check_counts(n, max_new_tokens)
        encoded = [self.encode(p) for p in prompts]
        check_room(max((len(ids) for ids in encoded), default=0), max_new_tokens, self.length_buckets[-1])
        rows = [(i, ids) for i, ids in enumerate(encoded) for _ in range(n)]
        out: list[list[Sample]] = [[] for _ in prompts]
        with self.lock:
            self._check_open()
            self.last_steps = []
            for b, start in enumerate(range(0, len(rows), self.batch_size)):
                chunk = rows[start : start + self.batch_size]
                for (i, ids), generated in zip(chunk, self._run(chunk, sampler, b, max_new_tokens), strict=True):
                    out[i].append(self.decode_row(prompts[i], generated, len(ids), max_new_tokens))
        return out

    def stream(
        self,
        request: Request | str,
        sampler: SamplerSpec = SamplerSpec(),
        *,
        n: int = 1,
        max_new_tokens: int = GenerateOptions.max_new_tokens,
        chunk_tokens: int | None = None,
    ) -> Stream:
        """`n` reviews for one request, the first one as text pieces while it is written.

        Iterating the returned `Stream` yields the first review's text as it grows
        (the first piece after one token, then about every `CHUNK_SECONDS`, or every
        `chunk_tokens` tokens if given: each call has a fixed cost, so a fast model
        streams in longer pieces and a slow one token by token); when
        it ends, `Stream.samples` holds all `n` reviews, exactly the ones
        `generate` gives for the same request, sampler and seed. The model's lock
        is taken per chunk, so other streams and batches on the same model take
        turns with this one.

        Args:
            request: A `Request` or a ready prompt.
            sampler: How to pick tokens; beam and contrastive search cannot stream and give
                the whole review as one piece.
            n: Reviews (rows of one batch), at most `batch_size`.
            max_new_tokens: Length limit of one review.
            chunk_tokens: Tokens per piece after the first (default: as many as take `CHUNK_SECONDS`).

        Example:
            >>> for piece in gen.stream(req, SamplerSpec(name="greedy"), max_new_tokens=32):  # doctest: +SKIP
            ...     print(piece, end="", flush=True)
        """
        _check_counts(n, max_new_tokens)
        if n > self.batch_size:
            raise UserError(f"A stream has at most batch_size={self.batch_size} reviews. Received: n={n}")
        if chunk_tokens is not None and chunk_tokens < 1:
            raise UserError(f"chunk_tokens must be ≥ 1. Received: chunk_tokens={chunk_tokens}")
        prompt = request if isinstance(request, str) else request.prompt()
        return Stream(self, prompt, sampler, n=n, max_new_tokens=max_new_tokens, chunk_tokens=chunk_tokens)

    def encode(self, prompt: str) -> list[int]:
        """`<bos>` + the SentencePiece ids of `prompt`, exactly as in training.

        Example:
            >>> gen.encode("<start_of_turn>user")[0] == gen.encoder.bos_id  # doctest: +SKIP
            True
        """
        return [self.encoder.bos_id, *self.encoder.sp.encode(prompt)]

    def prefill(self, prompt_ids: list[int], sampler: SamplerSpec, *, rows: int, max_new_tokens: int) -> DecodeState:
        """Start a stream: `rows` copies of one encoded prompt, cache filled, no token written yet.

        The batch is padded to its compiled shape like any other; it takes the
        model's lock for the prefill only, so other streams and batches on the
        model take turns with this one. `advance` writes the tokens.

        Args:
            prompt_ids: The prompt as `encode` gives it.
            sampler: A stepwise sampler (see `kit.generate.decode.STEPWISE`).
            rows: Reviews to write for the prompt (at most `batch_size`).
            max_new_tokens: Length limit of one review.

        Raises:
            UserError: The model was unloaded (`SharedBase.close`).

        Example:
            >>> ds = gen.prefill(gen.encode(prompt), SamplerSpec(name="greedy"), rows=1, max_new_tokens=32)  # doctest: +SKIP
        """
        token_ids, padding_mask = self._pack([(0, prompt_ids)] * rows, max_new_tokens)
        with self.lock:
            self._check_open()
            return self._start(token_ids, padding_mask, sampler, 0, max_new_tokens)

    def advance(self, ds: DecodeState, sampler: SamplerSpec, steps: int) -> DecodeState:
        """Write up to `steps` more tokens of a stream's batch (fewer once every row is done).

        Takes the model's lock for these steps only, and runs with this
        generator's adapter.

        Raises:
            UserError: The model was unloaded (`SharedBase.close`).

        Example:
            >>> gen.advance(ds, SamplerSpec(name="greedy"), steps=4).index  # doctest: +SKIP
        """
        with self.lock:
            self._check_open()
            return self.decoder.advance(self.decoder.state(self.adapter), sampler, ds, steps=steps)

    def _pack(self, chunk, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(ids) for _, ids in chunk)
        length = self.bucket_length(longest, max_new_tokens)
        size = self.padded_batch(len(chunk))
        token_ids = np.zeros((size, length), dtype=np.int32)
        padding_mask = np.zeros((size, length), dtype=bool)
        for r in range(size):
            # Pad the batch with copies of the last real row: a real prompt keeps
            # the first generated position (the shortest prompt) where it was.
            ids = chunk[min(r, len(chunk) - 1)][1]
            token_ids[r, : len(ids)] = ids
            padding_mask[r, : len(ids)] = True
        return token_ids, padding_mask

    def padded_batch(self, rows: int) -> int:
        """The compiled batch size for `rows` rows."""
        return next(s for s in self.batch_sizes if s >= rows)

    def _start(self, token_ids, padding_mask, sampler: SamplerSpec, batch_index: int, max_new_tokens: int):
        return self.decoder.start(
            self.decoder.state(self.adapter),
            sampler,
            token_ids,
            padding_mask,
            seed=sampler.seed,
            stream=batch_index,
            limit=max_new_tokens,
            stops=self.stop_ids,
        )

    def _run(self, chunk, sampler: SamplerSpec, batch_index: int, max_new_tokens: int) -> np.ndarray:
        token_ids, padding_mask = self._pack(chunk, max_new_tokens)
        if sampler.name not in STEPWISE:
            return self._run_keras(token_ids, padding_mask, sampler, batch_index)[: len(chunk)]
        ds = self._start(token_ids, padding_mask, sampler, batch_index, max_new_tokens)
        self.decoder.advance(self.decoder.state(self.adapter), sampler, ds, steps=token_ids.shape[1])
        self.last_steps.append(ds.steps)
        return ds.tokens()[: len(chunk)]

    def _run_keras(self, token_ids, padding_mask, sampler: SamplerSpec, batch_index: int) -> np.ndarray:
        """Beam and contrastive search: KerasHub's own compiled generate (no streaming)."""
        if self.adapter:
            # KerasHub's program reads the variables themselves: swap this run's adapter in
            # (the caller holds the model's lock).
            for v in self.lm.backbone.weights:
                if v.path in self.adapter:
                    v.assign(self.adapter[v.path])
        function = self._program(sampler)
        for variable in self.lm.sampler.variables:  # SeedGenerator state: [seed, counter]
            variable.assign(np.asarray([sampler.seed, batch_index << 20], dtype=variable.dtype))
        outputs = function({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=self.stop_ids)
        token_ids = np.asarray(outputs["token_ids"])
        self.last_steps.append(int(token_ids.shape[1] - padding_mask.sum(axis=-1).min()))
        return token_ids

    def bucket_length(self, prompt_tokens: int, max_new_tokens: int) -> int:
        """The compiled total length for a batch whose longest prompt has `prompt_tokens` tokens."""
        return pick_length(self.length_buckets, prompt_tokens, max_new_tokens)

    def is_compiled(self, request: Request | str, sampler: SamplerSpec, *, n: int = 1, max_new_tokens: int) -> bool:
        """Whether generating this (one request, `n` reviews) reuses a compiled program or compiles one first."""
        prompt = request if isinstance(request, str) else request.prompt()
        length = self.bucket_length(len(self.encode(prompt)), max_new_tokens)
        rows = min(n, self.batch_size)
        if sampler.name not in STEPWISE:  # KerasHub's program: compiled per sampler (and shape)
            return sampler.key() in self._programs
        return self.decoder.is_compiled(length, self.padded_batch(rows), sampler)

    def compile_estimate_s(self) -> float:
        """Rough seconds the first call of a new shape takes (compile + run) on this model.

        The longest first call seen on this model if there was one, else a guess
        from the parameter count: about 10 s for the tiny model on a CPU, a few
        minutes for Gemma 2 2B.

        Example:
            >>> f"compiling, about {gen.compile_estimate_s():.0f} s"  # doctest: +SKIP
            'compiling, about 10 s'
        """
        if self.decoder.compile_seconds:
            return max(self.decoder.compile_seconds)
        params = sum(int(np.prod(v.shape)) for v in self.lm.backbone.weights)
        return 10.0 * (1 + params / 1e8)

    def _program(self, sampler: SamplerSpec):
        key = sampler.key()
        if key not in self._programs:
            self.lm.sampler = sampler.build()
            self.lm.generate_function = None
            self._programs[key] = (self.lm.sampler, self.lm.make_generate_function())
        self.lm.sampler, function = self._programs[key]
        self.lm.generate_function = function
        return function

    def decode_row(self, prompt: str, row: np.ndarray, n_prompt: int, max_new_tokens: int) -> Sample:
        """The `Sample` in one row of tokens: new tokens up to a stop id or the limit, as review text.

        Args:
            prompt: The prompt the row starts with (stripped from the text).
            row: Token ids, prompt first (`DecodeState.tokens()` or a batch's row).
            n_prompt: Tokens of the prompt in `row` (its `encode` length).
            max_new_tokens: Length limit of the review.

        Example:
            >>> gen.decode_row(prompt, ds.tokens()[0], len(gen.encode(prompt)), 32).text  # doctest: +SKIP
            'Уютное кафе...'
        """
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


class Stream:
    """The pieces of one review as it is written; `samples` once it has ended (see `Generator.stream`).

    It drives the generator through its public steps only: `encode`, `prefill`,
    `advance` (each takes the model's lock) and `decode_row`.

    Attributes:
        samples: The `n` finished `Sample`s (None until the iteration has ended).
        first_token_s: Seconds from the start to the first token (prefill + one step).
        seconds: Seconds from the start until every review was done.
        steps: Decode steps run.
    """

    def __init__(self, gen: Generator, prompt: str, sampler: SamplerSpec, *, n, max_new_tokens, chunk_tokens):
        self.gen, self.prompt, self.sampler = gen, prompt, sampler
        self.n, self.max_new_tokens, self.chunk_tokens = n, max_new_tokens, chunk_tokens
        self.samples: list[Sample] | None = None
        self.first_token_s: float | None = None
        self.seconds: float | None = None
        self.steps = 0

    def __iter__(self) -> Iterator[str]:
        gen, t0 = self.gen, time.perf_counter()
        if self.sampler.name not in STEPWISE:  # beam / contrastive: the whole review at once
            self.samples = gen.complete([self.prompt], self.sampler, n=self.n, max_new_tokens=self.max_new_tokens)[0]
            self.first_token_s = self.seconds = time.perf_counter() - t0
            self.steps = sum(gen.last_steps)
            yield self.samples[0].text
            return
        ids = gen.encode(self.prompt)
        check_room(len(ids), self.max_new_tokens, gen.length_buckets[-1])
        ds = gen.prefill(ids, self.sampler, rows=self.n, max_new_tokens=self.max_new_tokens)
        sent, steps = "", 1
        while not ds.done:
            t = time.perf_counter()
            before = ds.steps
            gen.advance(ds, self.sampler, steps)
            if self.first_token_s is None:
                self.first_token_s = time.perf_counter() - t0
                steps = self.chunk_tokens or 4  # the first call compiled or prefilled: not a step's time
            elif self.chunk_tokens:
                steps = self.chunk_tokens
            else:
                per_step = (time.perf_counter() - t) / max(ds.steps - before, 1)
                steps = int(min(max(CHUNK_SECONDS / max(per_step, 1e-6), 1), 256))
            first = gen.decode_row(self.prompt, ds.tokens()[0][: ds.index], len(ids), self.max_new_tokens)
            text = first.text if first.stopped else first.text.rstrip("\\")  # "\\" may start an escape
            if len(text) > len(sent) and text.startswith(sent):
                yield text[len(sent) :]
                sent = text
            if first.stopped or first.new_tokens >= self.max_new_tokens:
                # The first review is done; finish the others (if any) in one call.
                steps = ds.token_ids.shape[1]
                if self.n == 1:
                    break
        tokens = ds.tokens()
        self.samples = [gen.decode_row(self.prompt, tokens[r], len(ids), self.max_new_tokens) for r in range(self.n)]
        self.steps, self.seconds = ds.steps, time.perf_counter() - t0
        final = self.samples[0].text
        if len(final) > len(sent) and final.startswith(sent):
            yield final[len(sent) :]


def _check_counts(n: int, max_new_tokens: int) -> None:
    if n < 1:
        raise UserError(f"n (samples per request) must be ≥ 1. Received: n={n}")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be ≥ 1. Received: max_new_tokens={max_new_tokens}")


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


def check_room(prompt_tokens: int, max_new_tokens: int, limit: int = CONTEXT_TOKENS) -> None:
    """Refuse a `max_new_tokens` that does not fit in `limit` after the longest prompt (before generating).

    `limit` is the longest prompt + review the generator compiles (its largest
    length bucket, at most `CONTEXT_TOKENS`): the kit's own cap, half of Gemma 2's
    8,192-token context.

    Raises:
        UserError: naming the value and the allowed range.

    Example:
        >>> check_room(96, 4001)
        Traceback (most recent call last):
        ...
        kit.errors.UserError: --max-new-tokens 4001 does not fit: the longest prompt takes 96 of the kit's 4096-token generation limit (prompt + review), so the allowed range is 1 to 4000.
    """
    room = limit - prompt_tokens
    if prompt_tokens and max_new_tokens > room:
        if room < 1:
            raise UserError(
                f"The prompt is {prompt_tokens} tokens, the kit's whole {limit}-token generation limit; shorten the "
                "name, address or keywords."
            )
        raise UserError(
            f"--max-new-tokens {max_new_tokens} does not fit: the longest prompt takes {prompt_tokens} of the "
            f"kit's {limit}-token generation limit (prompt + review), so the allowed range is 1 to {room}."
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

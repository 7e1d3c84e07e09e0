"""How tokens are picked, and how much: the one set of generation defaults.

`SamplerSpec()` and `GenerateOptions()` are the defaults of `kit generate`,
`kit evaluate` and the app alike; the CLI builds its flags (and their help
text, default included) from these fields, so a default lives only here.

The default sampler is top-k with k 5 at temperature 1: KerasHub's own
default for `CausalLM.generate`, and what every committed report used.
"""

from __future__ import annotations

import dataclasses

from kit.errors import UserError
from kit.options import check_options, option

SAMPLERS = ("greedy", "top_k", "top_p", "beam", "contrastive", "random")
# The longest prompt + review the kit generates, in tokens (the largest length it compiles,
# half of Gemma 2's 8,192-token context): a review can be at most this minus its prompt.
CONTEXT_TOKENS = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    """How to pick tokens (maps onto `keras_hub.samplers`).

    Attributes:
        name: One of `SAMPLERS`.
        temperature: Softmax temperature (> 0) applied before sampling.
        k: Candidates for `top_k` and `contrastive`; optional cap for `top_p` (0 = none).
        p: Cumulative probability for `top_p`.
        num_beams: Beams for `beam`.
        alpha: Degeneration penalty for `contrastive`.
        seed: Random seed for the sampling samplers (same seed -> same text).

    Example:
        >>> SamplerSpec(name="top_k", k=40, temperature=0.8).build().k
        40
    """

    name: str = option(
        "top_k", "token choice; greedy, beam and contrastive ignore the seed", flag="sampler", choices=SAMPLERS
    )
    temperature: float = option(1.0, "softmax temperature (> 0)", greater_than=0)
    k: int = option(5, "k of top_k and contrastive; cap of top_p (0 = none)", flag="top-k", minimum=0)
    p: float = option(0.9, "p of top_p, in (0, 1]", flag="top-p", greater_than=0, maximum=1)
    num_beams: int = option(4, "beams of beam search", minimum=1)
    alpha: float = option(0.6, "degeneration penalty of contrastive, in [0, 1]", minimum=0, maximum=1)
    seed: int = option(0, "sampling seed: same seed, same text", minimum=0)

    def __post_init__(self):
        check_options(self, flags=True)
        # A rule between two fields: k = 0 ("no cap") is fine for top_p, but top_k and contrastive pick among k.
        if self.name in ("top_k", "contrastive") and self.k < 1:
            raise UserError(
                f"--top-k must be ≥ 1 for the {self.name} sampler, received {self.k}. "
                "Give --top-k 1 or more, or pick another --sampler."
            )

    @property
    def stochastic(self) -> bool:
        """Whether the seed matters (the sampler draws random numbers)."""
        return self.name in ("top_k", "top_p", "random")

    def key(self) -> tuple:
        """What the compiled program depends on: everything but the seed."""
        return (self.name, self.temperature, self.k, self.p, self.num_beams, self.alpha)

    def build(self):
        """A fresh `keras_hub.samplers.Sampler`."""
        import keras_hub

        s, t = keras_hub.samplers, self.temperature
        if self.name == "greedy":
            return s.GreedySampler(temperature=t)
        if self.name == "top_k":
            return s.TopKSampler(k=self.k, seed=self.seed, temperature=t)
        if self.name == "top_p":
            return s.TopPSampler(p=self.p, k=self.k or None, seed=self.seed, temperature=t)
        if self.name == "beam":
            return s.BeamSampler(num_beams=self.num_beams, temperature=t)
        if self.name == "contrastive":
            return s.ContrastiveSampler(k=self.k, alpha=self.alpha, temperature=t)
        return s.RandomSampler(seed=self.seed, temperature=t)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """How many reviews, how long, in what batches (the non-sampler half of `kit generate`).

    Attributes:
        n: Reviews per request.
        max_new_tokens: Length limit of one review, in tokens.
        batch_size: Rows (requests x samples) per compiled batch.

    Example:
        >>> GenerateOptions().max_new_tokens
        192
    """

    n: int = option(1, "reviews per request", minimum=1)
    max_new_tokens: int = option(
        192,
        f"length limit of one review, in tokens (at most {CONTEXT_TOKENS} minus the prompt)",
        minimum=1,
        maximum=CONTEXT_TOKENS - 1,
    )
    batch_size: int = option(8, "rows per compiled batch", minimum=1)

    def __post_init__(self):
        check_options(self)

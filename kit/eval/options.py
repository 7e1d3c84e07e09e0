"""`EvalOptions`: what `kit evaluate` runs on and how it samples (its CLI flags come from these fields)."""

from __future__ import annotations

import dataclasses

from kit.eval.requests import REQUEST_MODES
from kit.generate.sampler import CONTEXT_TOKENS, GenerateOptions, SamplerSpec
from kit.options import check_options, option


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """What to evaluate on and how to generate.

    Attributes:
        split: Split of the prepared dataset to draw requests from.
        limit: Number of requests (None: the whole split).
        seed: Seeds the request sample, the sampler and the bootstrap.
        requests: `balanced` (default): as equal a number of requests per
            rating as the split allows; `random`: a uniform sample (the
            split's own rating mix, ~80 % 5-star on the real data). Rating
            control is judged on balanced requests because on the natural mix
            a model that always writes a 5-star review scores ~0.8 "accuracy";
            the natural mix is one flag away for overlap-style comparisons.
        sampler: How every model picks tokens: `SamplerSpec()`, the kit's one
            default, unless given (its seed is replaced by `seed`).
        max_new_tokens: Longest generated review, in tokens (`GenerateOptions`' default).
        batch_size: Requests per generation / scoring batch.
        n_resamples: Bootstrap resamples for each interval.
        top_rubrics: How many of the most requested rubrics get a slice.
        perplexity: Score the human references' perplexity under each model.
        progress: Show progress bars.

    Example:
        >>> EvalOptions(seed=3).sampler_spec().seed, EvalOptions().sampler_spec() == SamplerSpec()
        (3, True)
    """

    split: str = option("test", "split to draw requests from")
    limit: int | None = option(150, "number of requests", minimum=1)
    seed: int = option(0, "seed of requests, sampler and bootstrap", minimum=0)
    requests: str = option(
        "balanced",
        "balanced: as many requests per rating as the split allows (judges rating "
        "control fairly); random: the split's own rating mix",
        choices=REQUEST_MODES,
    )
    sampler: SamplerSpec = dataclasses.field(default_factory=SamplerSpec)
    max_new_tokens: int = option(
        GenerateOptions.max_new_tokens,
        f"longest review, in tokens (at most {CONTEXT_TOKENS} minus the prompt)",
        minimum=1,
        maximum=CONTEXT_TOKENS - 1,
    )
    batch_size: int = option(16, "requests per batch", minimum=1)
    n_resamples: int = option(1000, "bootstrap resamples", flag="bootstrap", minimum=1)
    top_rubrics: int = option(5, "rubric slices to report", minimum=0)
    perplexity: bool = option(True, "score the perplexity of the references")
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        check_options(self, flags=True)  # the sampler checked itself when it was made

    def sampler_spec(self) -> SamplerSpec:
        """The `SamplerSpec` every model gets: `sampler` with this evaluation's seed."""
        return dataclasses.replace(self.sampler, seed=self.seed)

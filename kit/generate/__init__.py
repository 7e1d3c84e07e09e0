"""The generation stage: validated requests, the sampler and its defaults, the batched generator, JSONL I/O.

Example:
    >>> from kit.generate import Generator, Request, SamplerSpec  # doctest: +SKIP
    >>> from kit.model import load_model  # doctest: +SKIP
    >>> gen = Generator(load_model("runs/tiny-lora"))  # doctest: +SKIP
    >>> gen.generate([Request.create(rubrics="Кафе", rating=5)], SamplerSpec())[0][0].text  # doctest: +SKIP
"""

from kit.generate.generator import (
    LENGTH_BUCKETS,
    Generator,
    Sample,
    enable_compile_cache,
    pick_length,
)
from kit.generate.io import read_requests, response_records, write_responses
from kit.generate.request import FIELDS, Request, RequestError
from kit.generate.sampler import SAMPLERS, GenerateOptions, SamplerSpec

__all__ = [
    "FIELDS",
    "LENGTH_BUCKETS",
    "SAMPLERS",
    "GenerateOptions",
    "Generator",
    "Request",
    "RequestError",
    "Sample",
    "SamplerSpec",
    "enable_compile_cache",
    "pick_length",
    "read_requests",
    "response_records",
    "write_responses",
]

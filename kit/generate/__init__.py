"""The generation stage: requests, sampler defaults, the decode loop, the generator, shared bases, JSONL I/O.

Example:
    >>> from kit.generate import Generator, Request, SamplerSpec  # doctest: +SKIP
    >>> from kit.model import load_model  # doctest: +SKIP
    >>> gen = Generator(load_model("runs/tiny-lora"))  # doctest: +SKIP
    >>> gen.generate([Request.create(rubrics="Кафе", rating=5)], SamplerSpec())[0][0].text  # doctest: +SKIP
"""

from kit.generate.decode import STEPWISE, Decoder, DecodeState
from kit.generate.generator import (
    LENGTH_BUCKETS,
    Generator,
    Sample,
    Stream,
    enable_compile_cache,
    pick_length,
)
from kit.generate.io import read_requests, response_records, write_responses
from kit.generate.pool import ModelPool, SharedBase, slot_for
from kit.generate.request import FIELDS, Request, RequestError
from kit.generate.sampler import SAMPLERS, GenerateOptions, SamplerSpec

__all__ = [
    "FIELDS",
    "LENGTH_BUCKETS",
    "SAMPLERS",
    "STEPWISE",
    "DecodeState",
    "Decoder",
    "GenerateOptions",
    "Generator",
    "ModelPool",
    "Request",
    "RequestError",
    "Sample",
    "SamplerSpec",
    "SharedBase",
    "Stream",
    "enable_compile_cache",
    "pick_length",
    "read_requests",
    "response_records",
    "slot_for",
    "write_responses",
]

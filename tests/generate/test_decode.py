"""The kit's decode loop: KerasHub's text for the same seed, early stop, streaming equal to the batch path."""

from __future__ import annotations

import pytest

from kit.generate import Generator, Request, SamplerSpec
from kit.model import load_causal_lm

REQS = [
    Request.create(rubrics="Кафе", rating=5, keywords="кофе, десерт"),
    Request.create(
        rubrics="Гостиница;Ресторан", rating=1, keywords="номер", name="Азимут", address="Москва, Тверская улица, 3"
    ),
]


@pytest.fixture(scope="module")
def gen(tiny_preset):
    return Generator(load_causal_lm(str(tiny_preset), dtype="float32"), batch_size=4, length_buckets=(128,))


def keras_hub_rows(gen, requests, sampler, n, max_new_tokens):
    """The same batch through KerasHub's own compiled generate (runs until every row has a stop id or the end)."""
    chunk = [(i, gen.encode(r.prompt())) for i, r in enumerate(requests) for _ in range(n)]
    token_ids, padding_mask = gen._pack(chunk, max_new_tokens)
    rows = gen._run_keras(token_ids, padding_mask, sampler, 0)
    return [gen.decode_row(requests[i].prompt(), rows[j], len(ids), max_new_tokens) for j, (i, ids) in enumerate(chunk)]


@pytest.mark.parametrize(
    "sampler",
    [SamplerSpec(name="greedy"), SamplerSpec(name="top_k", seed=3, temperature=1.5), SamplerSpec(name="top_p", seed=4)],
    ids=lambda s: s.name,
)
def test_same_seed_same_text_as_keras_hub_with_fewer_steps(gen, sampler):
    ours = [s for samples in gen.generate(REQS, sampler, n=2, max_new_tokens=20) for s in samples]
    steps = list(gen.last_steps)
    theirs = keras_hub_rows(gen, REQS, sampler, 2, 20)
    assert [s.text for s in ours] == [s.text for s in theirs]
    assert [s.new_tokens for s in ours] == [s.new_tokens for s in theirs]
    lengths = [len(gen.encode(r.prompt())) for r in REQS]
    # Early stop: the random micro model never writes a stop id, so every row ends at its limit; the batch
    # stops when the longest prompt's row has its 20 tokens, not at the end of the 128-token bucket.
    assert steps == [max(lengths) - min(lengths) + 20]
    assert gen.last_steps[-1] == 128 - min(lengths)  # KerasHub's loop: to the end of the bucket


def test_decoding_ends_when_every_row_has_written_a_stop_id(gen):
    greedy = SamplerSpec(name="greedy")
    first = gen.generate(REQS[:1], greedy, max_new_tokens=30)[0][0]
    assert not first.stopped and first.new_tokens == 30 and gen.last_steps == [30]
    saved = gen.stop_ids
    try:
        ids = gen.encode(REQS[0].prompt())
        gen.stop_ids = ()
        row = gen._run([(0, ids)], greedy, 0, 30)[0]
        gen.stop_ids = (*saved, int(row[len(ids) + 2]))  # the third token greedy writes now ends the review
        stopped = gen.generate(REQS[:1], greedy, max_new_tokens=30)[0][0]
        assert stopped.stopped and stopped.new_tokens == 2 and gen.last_steps == [3]
    finally:
        gen.stop_ids = saved


@pytest.mark.parametrize(
    "sampler",
    [
        SamplerSpec(name="greedy"),
        SamplerSpec(name="top_k", seed=9, temperature=1.5),
        SamplerSpec(name="random", seed=2),
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("n", [1, 2])
def test_stream_gives_the_batch_text_piece_by_piece(gen, sampler, n):
    batch = gen.generate(REQS[:1], sampler, n=n, max_new_tokens=24)[0]
    traces = gen.traces
    stream = gen.stream(REQS[0], sampler, n=n, max_new_tokens=24, chunk_tokens=3)
    pieces = list(stream)
    assert "".join(pieces) == batch[0].text
    assert [s.text for s in stream.samples] == [s.text for s in batch]
    assert len(pieces) > 3  # it really came in pieces (the first after one token, then every 3)
    assert gen.traces == traces  # the batch path's program: no new compile for streaming
    assert 0 < stream.first_token_s <= stream.seconds and stream.steps >= 24


def test_stream_of_beam_search_is_one_piece(gen):
    beam = SamplerSpec(name="beam", num_beams=2)
    stream = gen.stream(REQS[0], beam, max_new_tokens=8)
    pieces = list(stream)
    assert pieces == [gen.generate(REQS[:1], beam, max_new_tokens=8)[0][0].text] and stream.steps > 0


def test_is_compiled_tracks_bucket_batch_and_sampler(gen):
    sampler = SamplerSpec(name="top_k", k=7, seed=1)
    assert not gen.is_compiled(REQS[0], sampler, n=1, max_new_tokens=16)
    assert gen.compile_estimate_s() > 0
    gen.generate(REQS[:1], sampler, max_new_tokens=16)
    assert gen.is_compiled(REQS[0], sampler, n=1, max_new_tokens=16)
    assert gen.is_compiled(REQS[1], SamplerSpec(name="top_k", k=7, seed=99), n=1, max_new_tokens=20)  # seed: same
    assert not gen.is_compiled(REQS[0], sampler, n=3, max_new_tokens=16)  # batch of 4: another program


def test_default_stream_sizes_pieces_by_time_and_keeps_the_text(gen):
    sampler = SamplerSpec(name="top_k", seed=11)
    batch = gen.generate(REQS[:1], sampler, max_new_tokens=40)[0][0]
    stream = gen.stream(REQS[0], sampler, max_new_tokens=40)  # pieces of about CHUNK_SECONDS each
    assert "".join(stream) == batch.text and stream.samples[0] == batch

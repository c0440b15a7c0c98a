"""TokenMixture: weighted, deterministic interleaving that resumes exactly, in a plain loop and with workers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from pipeline.loader.token_dataset import StateError
from pipeline.loader.mixture import TokenMixture
from tests.loader.fixtures import EOS, stdlib_docs, write_dataset

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process

A_MARK, B_MARK = 300, 301  # each source's documents start with its own id, so a window shows its source


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    def marked(mark: int, start: int) -> list[np.ndarray]:
        return [np.concatenate([[mark], d[:31]]).astype(np.uint16) for d in stdlib_docs(40, start=start)]
    a = write_dataset(tmp_path_factory.mktemp("a"), [marked(A_MARK, 0)[:25], marked(A_MARK, 0)[25:]], name="a")
    b = write_dataset(tmp_path_factory.mktemp("b"), [marked(B_MARK, 100)], name="b")
    return str(a), str(b)


def _mixture(sources: tuple[str, str], **kw: object) -> TokenMixture:
    return TokenMixture([(sources[0], 3.0), (sources[1], 1.0)], 32, seed=9, mode="pad", shuffle_buffer=8, **kw)


def _source(window: dict[str, torch.Tensor]) -> int:
    return int(window["input_ids"][0])


def test_weights_are_honoured_and_sources_cycle(sources: tuple[str, str]) -> None:
    windows = list(itertools.islice(iter(_mixture(sources)), 2000))
    counts = {m: sum(_source(w) == m for w in windows) for m in (A_MARK, B_MARK)}
    assert counts[A_MARK] + counts[B_MARK] == 2000
    assert 0.70 < counts[A_MARK] / 2000 < 0.80  # weight 3:1; each source is only 40 windows, so both cycled
    assert all(int(w["labels"][int((w["labels"] != -100).sum()) - 1]) == EOS for w in windows)


def test_mixture_is_deterministic_and_seeded(sources: tuple[str, str]) -> None:
    first = [_source(w) for w in itertools.islice(iter(_mixture(sources)), 300)]
    again = [_source(w) for w in itertools.islice(iter(_mixture(sources)), 300)]
    other = TokenMixture([(sources[0], 3.0), (sources[1], 1.0)], 32, seed=10, mode="pad", shuffle_buffer=8)
    assert first == again and first != [_source(w) for w in itertools.islice(iter(other), 300)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_mixture_resumes_exactly(sources: tuple[str, str], num_workers: int) -> None:
    def loader(mix: TokenMixture) -> StatefulDataLoader:
        return StatefulDataLoader(mix, batch_size=None, num_workers=num_workers)
    ref = list(itertools.islice(iter(loader(_mixture(sources, batch_size=4))), 70))
    for k in (3, 25, 50):
        first = loader(_mixture(sources, batch_size=4))
        it = iter(first)
        head = list(itertools.islice(it, k))
        state = first.state_dict()
        del it
        resumed = loader(_mixture(sources, batch_size=4))
        resumed.load_state_dict(state)
        rest = list(itertools.islice(iter(resumed), 70 - k))
        assert len(head + rest) == 70
        assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(head + rest, ref))


def test_mixture_state_of_another_mixture_is_refused(sources: tuple[str, str]) -> None:
    mix = _mixture(sources)
    next(iter(mix))
    other = TokenMixture([(sources[0], 1.0), (sources[1], 1.0)], 32, seed=9, mode="pad", shuffle_buffer=8)
    with pytest.raises(StateError, match="weights"):
        other.load_state_dict(mix.state_dict())
    with pytest.raises(StateError, match="version 7"):
        _mixture(sources).load_state_dict({**mix.state_dict(), "version": 7})


def test_mixture_refuses_bad_weights(sources: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="weights must be > 0"):
        TokenMixture([(sources[0], 1.0), (sources[1], 0.0)], 32)
    with pytest.raises(ValueError, match="at least one"):
        TokenMixture([], 32)

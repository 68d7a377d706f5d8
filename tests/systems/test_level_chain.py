"""dmtrec.systems.level_chain: the chain state both lod systems checkpoint."""

import pytest

from dmtrec.systems.level_chain import LevelChain


class _Chain(LevelChain):
    def __init__(self, budgets):
        super().__init__()
        self.budgets, self.iteration, self.level_index, self.results = list(budgets), 0, 0, []


def test_chain_state_round_trips_and_refuses_other_budgets():
    saved = _Chain([292, 58])
    saved.iteration, saved.level_index, saved.results = 437, 1, [{"faces": 292}]
    state = dict(saved.chain_state())
    resumed = _Chain([292, 58])
    resumed.load_chain_state(state)
    assert (resumed.iteration, resumed.level_index, resumed.results) == (437, 1, [{"faces": 292}])
    with pytest.raises(ValueError, match=r"budgets \[292, 58\], not \[292\]"):
        _Chain([292]).load_chain_state(state)

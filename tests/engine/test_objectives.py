"""The trainer's objectives (SFT, DPO) implement the declared Objective protocol."""

import pytest

from tui_ft.engine.training.dpo import DPOObjective
from tui_ft.engine.training.objective import Objective
from tui_ft.engine.training.sft import SFTObjective


class NoTokenizer:
    """Enough of a tokenizer for objectives over no items."""

    pad_token_id = 0


@pytest.mark.parametrize("objective", [
    SFTObjective([], NoTokenizer(), "alpaca", 64, train_on_prompt=False),
    DPOObjective([], NoTokenizer(), "alpaca", 64, beta=0.1),
], ids=["sft", "dpo"])
def test_each_objective_is_an_objective(objective):
    assert isinstance(objective, Objective)
    assert isinstance(objective.group_by_length, bool) and objective.items == [] and objective.lengths() == []


def test_the_protocol_refuses_what_lacks_a_method():
    class Partial:
        name, items, dropped, truncated, group_by_length = "x", [], 0, 0, True

        def lengths(self):
            return []

    assert not isinstance(Partial(), Objective)

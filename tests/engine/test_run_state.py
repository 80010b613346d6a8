"""Run states are an enum that reads and writes as the plain strings of status.json."""

import orjson

from tui_ft.engine.runs.state import FINAL_STATES, LIVE_STATES, RunState


def test_a_state_is_its_string_on_disk_and_in_text():
    assert orjson.dumps({"state": RunState.RUNNING}) == b'{"state":"running"}'
    assert RunState("died") is RunState.DIED and RunState.DIED == "died"
    assert (str(RunState.STOPPED), f"{RunState.STOPPED}", f"{RunState.STOPPED:>9}") == ("stopped", "stopped", "  stopped")


def test_states_read_from_json_compare_with_the_members():
    status = orjson.loads(b'{"state": "finished"}')
    assert status["state"] in FINAL_STATES and status["state"] not in LIVE_STATES
    assert set(FINAL_STATES) | set(LIVE_STATES) == set(RunState) and not set(FINAL_STATES) & set(LIVE_STATES)

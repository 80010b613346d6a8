"""Snapshots of the Benchmark pane at 80×24 and 120×40: the table from fixed stored results, and a drill-down."""

import pytest

from bench_workspace import BenchApp, bench_home  # noqa: F401 (fixture)


async def settle(pilot):
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_benchmark_table(snap_compare, bench_home, size):
    async def mark_and_sort(pilot):
        await settle(pilot)
        await pilot.press("o", "space")  # sorted best first; the cursor's row (it follows default) marked

    assert snap_compare(BenchApp(bench_home), terminal_size=size, run_before=mark_and_sort)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_benchmark_items(snap_compare, bench_home, size):
    async def drill(pilot):
        await settle(pilot)
        await pilot.press("d", "down", "down")
        await pilot.pause()

    assert snap_compare(BenchApp(bench_home), terminal_size=size, run_before=drill)

"""The lender's bookkeeping (`engine/docker/network.py`) without a daemon: which network a
container gets, and when a step may start in it."""

from __future__ import annotations

from typing import cast

import anyio
import pytest
from anyio.abc import Process

from parapipe.engine.docker.network import NetworkHolder, NetworkLender
from parapipe.engine.process import Program

DOCKER = Program(name="docker", binary="docker", install_hint="install Docker")

pytestmark = pytest.mark.anyio


def lender_with(*holders: str) -> NetworkLender:
    lender = NetworkLender(DOCKER, lambda _: None)
    for name in holders:
        # As `_start` leaves a holder whose ready line came.
        lender._holders[name] = NetworkHolder(name=name, process=cast(Process, None), up=True)
    return lender


async def test_a_step_starts_in_a_network_only_once_the_step_before_is_gone() -> None:
    lender = lender_with("net-1")
    assert lender.borrow("a") == "net-1"
    assert lender.borrow("b") is None  # one idle container per holder
    lender.take("net-1", "a")
    assert await lender.claim("net-1", "a")
    assert not lender.free("net-1")  # a step runs there
    assert lender.borrow("b") is None  # not while a step runs, unless asked
    assert lender.borrow("b", busy_too=True) == "net-1"
    lender.take("net-1", "b")
    claimed: list[str] = []

    async def claim_b() -> None:
        if await lender.claim("net-1", "b"):
            claimed.append("b")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(claim_b)
        await anyio.sleep(0.05)
        lender.step_ended("net-1", "a")
        await anyio.sleep(0.05)
        assert claimed == []  # the step ended, but its container is not gone yet
        lender.give_back("net-1", "a", in_use=False)
    assert claimed == ["b"]


async def test_a_container_taken_for_a_step_gets_only_a_network_where_no_step_runs() -> None:
    lender = lender_with("net-1", "net-2")
    assert lender.borrow("a", for_step=True) in ("net-1", "net-2")
    first = "net-1" if not lender.free("net-1") else "net-2"
    assert await lender.claim(first, "a")
    other = lender.borrow("b", for_step=True)
    assert other is not None
    assert other != first
    assert await lender.claim(other, "b")
    assert lender.borrow("c", for_step=True) is None


async def test_after_a_killed_cli_no_step_starts_in_that_network() -> None:
    lender = lender_with("net-1")
    assert lender.borrow("a") == "net-1"
    lender.take("net-1", "a")
    assert await lender.claim("net-1", "a")
    assert lender.borrow("b", busy_too=True) == "net-1"
    lender.take("net-1", "b")
    lender.give_back("net-1", "a", in_use=True)  # its step may still run
    assert not await lender.claim("net-1", "b")
    assert lender.ended("net-1")
    assert lender.borrow("c", busy_too=True) is None

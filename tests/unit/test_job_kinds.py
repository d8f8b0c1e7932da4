"""Every kind of job is named once, in webvirt.jobs.kinds, and each name there resolves."""

from __future__ import annotations

import inspect

from webvirt.jobs import kinds


def test_every_kind_names_a_runner_taking_a_context_and_a_retrier_taking_an_actor_and_params() -> None:
    for kind, (_run, retry) in kinds.KINDS.items():
        runner = kinds.runner(kind)
        assert runner is not None and list(inspect.signature(runner).parameters) == ["ctx"], kind
        retrier = kinds.retrier(kind)
        assert (retrier is None) == (retry is None), kind
        if retrier is not None:
            assert list(inspect.signature(retrier).parameters) == ["actor", "params"], kind


def test_an_unknown_kind_has_neither() -> None:
    assert kinds.runner("no-such-kind") is None and kinds.retrier("no-such-kind") is None

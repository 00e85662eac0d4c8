"""Every (state, action) pair of an update: the allowed moves, and one refusal type."""

from __future__ import annotations

import itertools

import pytest

from appliance.domain.update_lifecycle import (
    LABELS,
    MOVES,
    NEEDS_WORK,
    Action,
    MoveRefused,
    State,
    check,
    move,
    sql_list,
)

S, A = State, Action

# The whole table written out once more, by hand, as a person reads it: a change to
# the lifecycle must change this test too.
EXPECTED = {
    (S.PENDING, A.APPROVE): S.APPROVED,
    (S.REJECTED, A.APPROVE): S.APPROVED,
    (S.IGNORED, A.APPROVE): S.APPROVED,
    (S.FAILED, A.APPROVE): S.APPROVED,
    (S.PENDING, A.REJECT): S.REJECTED,
    (S.APPROVED, A.REJECT): S.REJECTED,
    (S.SCHEDULED, A.REJECT): S.REJECTED,
    (S.PENDING, A.IGNORE): S.IGNORED,
    (S.APPROVED, A.IGNORE): S.IGNORED,
    (S.REJECTED, A.IGNORE): S.IGNORED,
    (S.FAILED, A.IGNORE): S.IGNORED,
    (S.SCHEDULED, A.IGNORE): S.IGNORED,
    (S.PENDING, A.SCHEDULE): S.SCHEDULED,
    (S.APPROVED, A.SCHEDULE): S.SCHEDULED,
    (S.FAILED, A.SCHEDULE): S.SCHEDULED,
    (S.SCHEDULED, A.SCHEDULE): S.SCHEDULED,
    (S.APPROVED, A.REQUEST_INSTALL): S.QUEUED,
    (S.SCHEDULED, A.REQUEST_INSTALL): S.QUEUED,
    (S.PENDING, A.INSTALL_NOW): S.QUEUED,
    (S.APPROVED, A.INSTALL_NOW): S.QUEUED,
    (S.REJECTED, A.INSTALL_NOW): S.QUEUED,
    (S.IGNORED, A.INSTALL_NOW): S.QUEUED,
    (S.FAILED, A.INSTALL_NOW): S.QUEUED,
    (S.SCHEDULED, A.INSTALL_NOW): S.QUEUED,
    (S.SCHEDULED, A.DUE): S.QUEUED,
    (S.SCHEDULED, A.DUE_FAILED): S.FAILED,
    (S.QUEUED, A.CANCEL_INSTALL): S.APPROVED,
    (S.FAILED, A.RETRY): S.QUEUED,
    (S.QUEUED, A.START): S.INSTALLING,
    (S.QUEUED, A.SUCCEED): S.INSTALLED,
    (S.INSTALLING, A.SUCCEED): S.INSTALLED,
    (S.FAILED, A.SUCCEED): S.INSTALLED,
    (S.QUEUED, A.FAIL): S.FAILED,
    (S.INSTALLING, A.FAIL): S.FAILED,
    (S.PENDING, A.UNLISTED): S.RESOLVED,
    (S.APPROVED, A.UNLISTED): S.RESOLVED,
    (S.REJECTED, A.UNLISTED): S.RESOLVED,
    (S.IGNORED, A.UNLISTED): S.RESOLVED,
    (S.SCHEDULED, A.UNLISTED): S.RESOLVED,
    (S.FAILED, A.UNLISTED): S.RESOLVED,
    (S.INSTALLED, A.LISTED_AGAIN): S.PENDING,
    (S.RESOLVED, A.LISTED_AGAIN): S.PENDING,
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(State, Action)))
def test_every_state_and_action_either_moves_as_the_table_says_or_is_refused(
    state: State, action: Action
) -> None:
    expected = EXPECTED.get((state, action))
    assert move(state, action) == expected
    if expected is None:
        with pytest.raises(MoveRefused) as refused:
            check(action, {7: state.value})
        assert refused.value.refused == {7: state.value}
        assert f"7 ({state.value})" in str(refused.value)
    else:
        check(action, {7: state.value})


def test_a_request_with_one_refused_update_is_refused_whole_naming_it() -> None:
    with pytest.raises(MoveRefused) as refused:
        check(A.APPROVE, {1: "pending", 2: "installing", 3: "failed"})
    assert refused.value.refused == {2: "installing"}
    assert str(refused.value) == "cannot approve updates 2 (installing)"


def test_an_install_under_way_can_be_moved_only_by_its_result_or_a_cancel() -> None:
    for state in (S.QUEUED, S.INSTALLING):
        movers = {action for action in Action if move(state, action) is not None}
        assert movers <= {A.START, A.SUCCEED, A.FAIL, A.CANCEL_INSTALL}


def test_every_state_has_a_label_and_the_table_names_only_known_states() -> None:
    assert set(LABELS) == set(State)
    for sources, to in MOVES.values():
        assert set(sources) <= set(State) and to in State
    assert set(NEEDS_WORK) <= set(State)


def test_sql_lists_are_quoted_constants() -> None:
    assert sql_list([S.PENDING, S.QUEUED]) == "('pending', 'queued')"

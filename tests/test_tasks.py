import numpy as np
import pytest

from sk_maskid import MaskedTask, make_windows, parse_task


@pytest.mark.parametrize(
    "spec, observed, targets, span, is_tensor",
    [
        ("1->2", (1,), ((2,),), 2, False),
        ("1,2->3", (1, 2), ((3,),), 3, False),
        ("3,1->2", (1, 3), ((2,),), 3, False),
        ("1->2*3", (1,), ((2, 3),), 3, True),
        ("2->1*3", (2,), ((1, 3),), 3, True),
        ("1->3", (1,), ((3,),), 3, False),
        (" 1 -> 2 , 3 ", (1,), ((2,), (3,)), 3, False),
        ("9->1*5", (9,), ((1, 5),), 9, True),
    ],
)
def test_parse(spec, observed, targets, span, is_tensor):
    task = parse_task(spec)
    assert isinstance(task, MaskedTask)
    assert task.observed == observed and task.targets == targets
    assert task.span == span and task.is_tensor == is_tensor
    assert parse_task(task.spec) == task  # the canonical spelling round-trips
    assert parse_task(task) is task


def test_task_is_immutable_and_hashable():
    task = parse_task("1->2*3")
    with pytest.raises(AttributeError):
        task.observed = (2,)
    assert {task: 1}[parse_task("1->2*3")] == 1
    assert task.target_dim(4) == 16
    assert parse_task("1->2,3").target_dim(4) == 8


@pytest.mark.parametrize(
    "spec, match",
    [
        ("1->1", "both observed and predicted"),
        ("->2", "malformed task"),
        ("1->", "malformed task"),
        ("1-2", "malformed task"),
        ("1->2**3", "malformed task"),
        ("0->1", "1-based"),
        ("1,1->2", "observed position is repeated"),
        ("1->2*2", "predicted position is repeated"),
        ("1*2->3", "malformed task"),
    ],
)
def test_bad_spellings(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_task(spec)


def test_bad_type():
    with pytest.raises(TypeError, match="task must be a string"):
        parse_task(12)


def test_make_windows_array_and_groups():
    seqs = np.arange(20).reshape(2, 10)
    windows, groups = make_windows(seqs, 4, step=2)
    assert windows.shape == (8, 4)  # starts 0, 2, 4, 6 in each sequence
    np.testing.assert_array_equal(windows[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(windows[3], [6, 7, 8, 9])
    np.testing.assert_array_equal(windows[4], [10, 11, 12, 13])
    np.testing.assert_array_equal(groups, [0] * 4 + [1] * 4)


def test_make_windows_ragged_and_vector_tokens():
    seqs = [np.zeros((5, 2)), np.ones((3, 2)), np.full((7, 2), 2.0)]
    windows, groups = make_windows(seqs, 4)
    assert windows.shape == (2 + 0 + 4, 4, 2)
    np.testing.assert_array_equal(groups, [0, 0, 2, 2, 2, 2])
    assert (windows[groups == 2] == 2).all()
    # 3-D arrays keep the token axis last
    w3, _ = make_windows(np.arange(24.0).reshape(1, 12, 2), 3)
    np.testing.assert_array_equal(w3[1], [[2, 3], [4, 5], [6, 7]])


def test_make_windows_errors():
    with pytest.raises(ValueError, match="longer than every sequence"):
        make_windows(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="window_length must be >= 1"):
        make_windows(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="empty"):
        make_windows([], 2)

import threading

import pytest

from vq_keras._step_flag import StepFlag

pytestmark = pytest.mark.backends


def test_the_flag_is_on_inside_the_block_only_and_nested_blocks_restore_it():
    flag = StepFlag()
    assert not flag.is_on()
    with flag.on():
        assert flag.is_on()
        with flag.on():
            assert flag.is_on()
        assert flag.is_on()
    assert not flag.is_on()


def test_take_is_a_one_shot_signal_and_the_block_restores_the_flag():
    flag = StepFlag()
    with flag.on():
        assert flag.take() and not flag.take() and not flag.is_on()
    assert not flag.take()
    with flag.on():
        assert flag.take()


def test_another_thread_does_not_see_the_flag():
    flag, seen = StepFlag(), []
    with flag.on():
        thread = threading.Thread(target=lambda: seen.append(flag.is_on()))
        thread.start()
        thread.join()
        assert flag.is_on()
    assert seen == [False]

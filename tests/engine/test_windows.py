import pytest

from composer.engine.windows import Window, plan_windows

W, S = 1500, 900  # 30 s window, 18 s stride at 50 frames/s


def test_short_generation_is_one_window() -> None:
    assert plan_windows(600, 0, W, S) == [Window(0, 600, 0)]
    assert plan_windows(1500, 0, W, S) == [Window(0, 1500, 0)]


def test_45_seconds() -> None:
    # 30 s, then keep 12 s as prompt and generate the remaining 15 s
    assert plan_windows(2250, 0, W, S) == [Window(0, 1500, 0), Window(600, 750, 1500)]


def test_60_seconds() -> None:
    assert plan_windows(3000, 0, W, S) == [Window(0, 1500, 0), Window(600, 900, 1500), Window(600, 600, 2400)]


def test_user_prompt_shortens_first_window() -> None:
    wins = plan_windows(2000, 500, W, S)
    assert wins[0] == Window(500, 1000, 0)
    assert wins[1] == Window(600, 900, 1000)
    assert sum(w.new_frames for w in wins) == 2000


def test_short_prompt_context_grows_with_output() -> None:
    wins = plan_windows(200, 10, 100, 60)
    assert wins[0] == Window(10, 90, 0)
    assert all(w.context_frames + w.new_frames <= 100 for w in wins)
    assert sum(w.new_frames for w in wins) == 200


@pytest.mark.parametrize("total", [1, 17, 1499, 1501, 4444, 15000])
@pytest.mark.parametrize("prompt", [0, 1, 599, 1499])
def test_windows_cover_exactly_and_fit(total: int, prompt: int) -> None:
    wins = plan_windows(total, prompt, W, S)
    assert sum(w.new_frames for w in wins) == total
    assert all(w.new_frames > 0 and w.context_frames + w.new_frames <= W for w in wins)
    starts = [w.start_frame for w in wins]
    assert starts == sorted(starts) and starts[0] == 0


@pytest.mark.parametrize("args", [(0, 0, W, S), (10, W, W, S), (10, 0, W, 0), (10, 0, W, W + 1)])
def test_rejects_impossible(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        plan_windows(*args)

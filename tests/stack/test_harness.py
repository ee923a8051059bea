"""The drills' accounting (deploy/harness.py): what counts as analysed once, delivered once, half-written."""
from deploy.harness import analysed_once, delivered_once, half_written, http_counts, percentile


def test_every_photo_finished_once_is_ok():
    figures = analysed_once([(1, "done"), (2, "rejected")], [(1, "quality"), (2, "baseline")], expected=2)
    assert figures["ok"] and figures["analysed_exactly_once"] == 2 and figures["duplicate_analyses"] == 0


def test_a_follow_up_compared_with_baseline_and_previous_is_one_analysis():
    figures = analysed_once([(3, "done")], [(3, "baseline"), (3, "previous")])
    assert figures["ok"] and figures["analysed_exactly_once"] == 1


def test_a_comparison_written_twice_is_a_duplicate():
    figures = analysed_once([(1, "done")], [(1, "baseline"), (1, "baseline")])
    assert not figures["ok"] and figures["duplicate_analyses"] == 1 and figures["photos_analysed_twice"] == [1]


def test_lost_stuck_and_empty_photos_fail():
    assert analysed_once([(1, "done")], [(1, "quality")], expected=2)["lost"] == 1
    assert analysed_once([(1, "processing")], [])["unfinished"] == [1]
    assert analysed_once([(1, "rejected")], [])["finished_without_analysis"] == [1]
    failed = analysed_once([(1, "failed")], [])
    assert failed["ok"] and failed["analysed_exactly_once"] == 0, "failed is an outcome (a person looks)"


def test_texts_delivered_once_twice_and_lost():
    rows = [(1, "+441", "sent", "SM1"), (2, "+442", "sent", "SM2")]
    assert delivered_once(rows, [("SM1", "+441"), ("SM2", "+442")])["ok"]
    twice = delivered_once(rows, [("SM1", "+441"), ("SM2", "+442"), ("SM3", "+442")])
    assert not twice["ok"] and twice["delivered_twice"] == 1 and twice["delivered_exactly_once"] == 1
    lost = delivered_once(rows[:1] + [(2, "+442", "unknown", None)], [("SM1", "+441")])
    assert not lost["ok"] and lost["lost"] == 1
    stray = delivered_once(rows, [("SM1", "+441"), ("SM2", "+442"), ("SM9", "+449")])
    assert not stray["ok"] and stray["unexpected_recipients"] == ["+449"]


def test_http_counts_allow_503_only_while_a_dependency_is_down():
    counts = http_counts([(202, False), (503, True), (500, True), (500, False), (404, False), (0, False)])
    assert counts == {"2xx": 1, "4xx": 1, "503_while_down": 1, "other_5xx_while_down": 1, "5xx_while_up": 1,
                      "no_answer": 1}


def test_half_written_rows_and_leftover_files():
    figures = half_written([(1, "a.jpg"), (2, "b.jpg")], {"a.jpg", "o.jpg", "x.jpg"}, other_keys={"o.jpg"})
    assert figures == {"rows_without_file": [2], "files_without_row": 1}


def test_percentile():
    assert percentile([], 0.95) is None
    assert percentile(list(range(1, 101)), 0.95) == 95


def test_saturated_rate_counts_only_while_a_backlog_waits():
    from bench.load import saturated_rate

    samples = [(0, 0, 0), (2, 3, 0), (4, 5, 1), (6, 4, 3), (8, 1, 5), (10, 0, 8)]
    assert saturated_rate(samples) == {"photos_per_minute": 50.0, "window_s": 6, "finished_in_window": 5}
    assert saturated_rate([(0, 0, 0), (2, 0, 1)])["photos_per_minute"] is None

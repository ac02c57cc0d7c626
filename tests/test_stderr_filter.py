"""The build's filter on fd 2: Ray's C++ false alarm is dropped, everything else passes, and at once."""

from __future__ import annotations

import os
import time

from hoiforge.pipeline.cluster import RAY_FALSE_ALARMS, without_false_alarms

ALARM = (
    b"[2026-12-07 08:33:11,920 E 29683 29683] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(x))' "
    + RAY_FALSE_ALARMS[0]
    + b". If the arguments in the object store go out of scope or are lost, the actor restart will fail.\n"
)


def test_the_false_alarm_is_dropped_and_other_output_passes(capfd):
    with without_false_alarms():
        os.write(2, b"before\n")
        os.write(2, ALARM[:40])  # a C++ line written in two parts is held until its end, then dropped
        os.write(2, ALARM[40:])
        os.write(2, b"[2026-12-07 08:33:12,000 E 1 1] core_worker.cc:1: a real error\n")
        os.write(2, b"\r progress 50%")  # a progress bar's partial line is not held back
    err = capfd.readouterr().err
    assert "constructor arguments" not in err
    assert err == "before\n[2026-12-07 08:33:12,000 E 1 1] core_worker.cc:1: a real error\n\r progress 50%"


def test_partial_lines_pass_while_the_block_runs(capfd):
    with without_false_alarms():
        os.write(2, b"\r progress 10%")
        deadline = time.monotonic() + 5
        seen = ""
        while "progress 10%" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
            seen += capfd.readouterr().err
        assert "progress 10%" in seen, "a partial line waited for the end of the block"

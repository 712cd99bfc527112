"""Retrain hooks against real subprocesses (issue 17, finding 4): what a hook gets, how long it is
waited for, what is kept of its output, and the events refused before any call."""

from __future__ import annotations

import os
import sys
import time
import tracemalloc

import orjson
import pytest

from streamdrift.retrain.listener import OUTPUT_KEPT_BYTES, CommandHook, HookError, WebhookHook, parse

EVENT = {"alert_id": "a1", "model_id": "churn", "action": "retrain", "detected_at": "2026-01-01T00:00:00Z"}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, only not reaped yet
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_hook_that_backgrounds_its_work_and_exits_0_succeeds(tmp_path):
    pidfile = tmp_path / "pid"
    # the background job inherits stdout and stderr: the pipes stay open for 60 s after the hook exits
    hook = CommandHook(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo submitted"], timeout_s=20)
    try:
        hook(EVENT)  # before: waited for the pipes, killed at the timeout, a failure (retried: submitted again)
        assert _alive(int(pidfile.read_text()))  # its work goes on
    finally:
        os.kill(int(pidfile.read_text()), 9)


def test_a_timeout_kills_the_hooks_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    hook = CommandHook(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"], timeout_s=0.5)
    with pytest.raises(HookError, match="killed after 0.5s"):
        hook(EVENT)
    assert _wait_dead(int(pidfile.read_text()))  # before: the background sleep outlived the hook


def test_hook_output_is_bounded_to_its_last_64_kib():
    script = "import sys; [sys.stdout.write('x' * 1023 + '\\n') for _ in range(40_000)]; print('the end'); sys.exit(3)"
    hook = CommandHook([sys.executable, "-c", script], timeout_s=60)
    tracemalloc.start()
    try:
        with pytest.raises(HookError) as failed:
            hook(EVENT)  # 40 MiB of output
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "exited 3" in str(failed.value) and str(failed.value).endswith("the end")
    assert peak < 8 * OUTPUT_KEPT_BYTES  # before: the whole 40 MiB


def test_the_hook_gets_only_the_documented_environment_and_the_names_passed(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMDRIFT_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setenv("RETRAIN_TOKEN", "for-the-hook")
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = tmp_path / "env.json"
    script = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    CommandHook([sys.executable, "-c", script], pass_env=["RETRAIN_TOKEN"])(EVENT, 2)
    env = orjson.loads(out.read_bytes())
    assert env["STREAMDRIFT_HOOK_MODEL_ID"] == "churn" and env["STREAMDRIFT_HOOK_ATTEMPT"] == "2"
    assert env["RETRAIN_TOKEN"] == "for-the-hook" and env["LANG"] == "C.UTF-8"
    assert "STREAMDRIFT_KAFKA__SASL_PASSWORD" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "RETRAIN_TOKEN"}
    # (the interpreter may add LC_CTYPE itself when it coerces the C locale)
    assert set(env) - allowed == {"STREAMDRIFT_HOOK_MODEL_ID", "STREAMDRIFT_HOOK_ALERT_ID", "STREAMDRIFT_HOOK_ATTEMPT"}


def test_a_hook_that_does_not_read_its_input_is_judged_by_its_exit_status():
    CommandHook(["true"])({**EVENT, "payload": "x" * 1_000_000})  # its stdin closed unread: no error


@pytest.mark.parametrize("field", ["model_id", "alert_id"])
@pytest.mark.parametrize("bad", ["\x00", "a\nb", "\x7f"])
def test_ids_with_control_characters_are_not_drift_events(field, bad):
    event, reason = parse(orjson.dumps({**EVENT, field: f"m{bad}1"}))
    assert event is None and f"'{field}' holds a control character" in reason


def test_the_webhook_refuses_ids_no_header_can_carry():
    hook = WebhookHook("http://127.0.0.1:9/retrain")
    assert hook.refuses(EVENT) == ""
    assert hook.refuses({**EVENT, "model_id": "café"}) == ""  # latin-1
    assert "'model_id' is not latin-1" in hook.refuses({**EVENT, "model_id": "模型"})
    assert "'alert_id' is not latin-1" in hook.refuses({**EVENT, "alert_id": "a\u2028"})


def test_rollback_events_go_to_a_listener_that_chose_them_and_only_there():
    from streamdrift.cli import _parser
    from streamdrift.retrain.listener import IGNORED, TRIGGER, AlertFilter

    args = _parser().parse_args(["retrain-listener", "--command", "true", "--actions", "rollback"])
    assert args.actions == {"rollback"}
    rollback = {**EVENT, "alert_id": "a2", "action": "rollback", "rollback_to": "v1"}
    rollbacks = AlertFilter(args.actions, debounce_s=3600, remember=10)
    retrains = AlertFilter({"retrain"}, debounce_s=3600, remember=10)
    assert (rollbacks.decide(rollback), rollbacks.decide(EVENT)) == (TRIGGER, IGNORED)
    assert (retrains.decide(rollback), retrains.decide(EVENT)) == (IGNORED, TRIGGER)
    with pytest.raises(SystemExit):
        _parser().parse_args(["retrain-listener", "--command", "true", "--actions", "roll-back"])

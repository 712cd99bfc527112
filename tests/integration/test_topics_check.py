"""``streamdrift topics check`` verifies the approvals topic as it does the state topic, on a real broker: a missing
approvals topic, or one that deletes by age, stops the check naming the topic and the fix."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from worker_process import streamdrift, worker_env

pytestmark = pytest.mark.kafka


def test_topics_check_refuses_an_approvals_topic_that_is_missing_or_deletes_by_age(
    kafka_bootstrap, unique_name, tmp_path
):
    env = worker_env(kafka_bootstrap, unique_name("sd"), tmp_path, STATE_STORE="local")
    approvals = env["STREAMDRIFT_TOPICS__APPROVALS"]
    deleting, compacted = f"{approvals}.deleting", f"{approvals}.compacted"
    inputs = [env[f"STREAMDRIFT_TOPICS__{t}"] for t in ("PREDICTIONS", "FEEDBACK", "ALERTS", "DEAD_LETTER")]
    wanted = [NewTopic(name, 2, 1) for name in inputs]
    wanted += [NewTopic(deleting, 1, 1), NewTopic(compacted, 1, 1, config={"cleanup.policy": "compact"})]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(wanted).values():
        future.result()

    for topic, says in ((approvals, "does not exist"), (deleting, "has cleanup.policy=delete, not compact")):
        done = streamdrift({**env, "STREAMDRIFT_TOPICS__APPROVALS": topic}, "topics", "check", "--sample", "0")
        assert done.returncode == 2, done.stderr
        assert f"approvals topic {topic!r} {says}" in done.stderr
        assert "streamdrift topics create" in done.stderr  # the fix

    done = streamdrift({**env, "STREAMDRIFT_TOPICS__APPROVALS": compacted}, "topics", "check", "--sample", "0")
    assert done.returncode == 0, done.stderr
    assert f"approvals topic ok: {compacted} is compacted and has 1 partition(s)" in done.stdout

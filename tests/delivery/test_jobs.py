"""Work queued by task name (delivery/jobs.py) reaches the task of that name, on its queue."""

import base64
import json

from delivery import jobs, tasks


def test_every_job_names_a_task_that_exists():
    names = {task.name for task in (tasks.feed_deliveries, tasks.campaign_materialise, tasks.message_change_chunk)}
    assert {jobs.FEED, jobs.MATERIALISE, jobs.MESSAGE_CHANGE_CHUNK} == names


def test_a_job_is_queued_on_the_control_queue_with_its_arguments_and_countdown(redis_client):
    jobs.message_change_chunk(7, 3, countdown=5)
    jobs.materialise(11, 40)
    jobs.feed()

    messages = [json.loads(raw) for raw in reversed(redis_client.lrange("control", 0, -1))]
    assert [m["headers"]["task"] for m in messages] == [jobs.MESSAGE_CHANGE_CHUNK, jobs.MATERIALISE, jobs.FEED]
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in messages] == [[7, 3], [11, 40], []]
    assert messages[0]["headers"]["eta"] is not None and messages[1]["headers"]["eta"] is None

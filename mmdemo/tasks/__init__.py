"""The built-in tasks, registered in tab order. A new task: one module here plus one line below."""

from mmdemo.registry import register
from mmdemo.tasks.captioning import CaptioningTask
from mmdemo.tasks.sentiment.task import SentimentTask
from mmdemo.tasks.speech.live_step import LiveStepTask
from mmdemo.tasks.speech.task import SpeechTask
from mmdemo.tasks.vqa import VqaTask
from mmdemo.tasks.zero_shot import ZeroShotTask

for task in (VqaTask(), CaptioningTask(), ZeroShotTask(), SpeechTask(), SentimentTask()):
    register(task)
register(LiveStepTask())  # hidden: each step of the speech tab's live mode (no tab of its own)

"""The speech-to-text task (task.py) with the helpers only it uses: the greedy Whisper decoder and subtitles."""

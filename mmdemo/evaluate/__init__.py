"""Evaluation: a whole test set through 1-4 models of a task, with metrics and a report (the Evaluate tab and
`python -m mmdemo.evaluate` share `engine.evaluate`).

manifest (rows -> items) · archive (safe ZIP and folder intake) · engine (the runs) · metrics (and vqa_answers,
clip_score) · report (results files and report.html) · cli.
"""

"""Replacements for two of Gradio's classes, written against one Gradio version: applied on that version only.

`queueing` copies the loop bodies of Gradio's `Queue` and `sessions` rebuilds its `SessionState`; both replace
Gradio's class process-wide. On any other Gradio they could silently drop a fix or break on a renamed attribute,
so `install()` leaves Gradio alone there and the app runs on Gradio's own queue and sessions. To move to a new
Gradio: compare its `Queue` and `SessionState` with the patches (tests/test_queueing.py pins the loops it copies),
carry the changes over, then update PATCHED_GRADIO.
"""

from __future__ import annotations

import importlib
import logging
import sys

import gradio

log = logging.getLogger(__name__)

PATCHED_GRADIO = "6.31.0"  # the Gradio whose code the patches copy
PATCHES = ("sessions", "queueing")  # modules here, each with install() and uninstall()


def install() -> bool:
    """Apply the patches if the installed Gradio is PATCHED_GRADIO (idempotent); else log one warning and change
    nothing. Returns whether they are applied."""
    if gradio.__version__ != PATCHED_GRADIO:
        log.warning("Gradio %s is not the version mmdemo's patches were written for (%s): running on Gradio's own "
                    "queue and sessions", gradio.__version__, PATCHED_GRADIO)
        return False
    # Imported here: on another Gradio, importing them could fail (they subclass and import Gradio internals).
    for name in PATCHES:
        importlib.import_module(f"{__name__}.{name}").install()
    return True


def uninstall() -> None:
    """Put Gradio's own classes back: apps built from now on queue with Gradio's `Queue`, and new sessions start
    with its `SessionState` (an app already built keeps the queue it was built with)."""
    for name in PATCHES:
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:  # never imported: never installed
            module.uninstall()

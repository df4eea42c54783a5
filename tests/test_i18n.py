"""The catalogues: every language has the same keys and placeholders, no UI string is written outside them, every
error the app raises is a key, and the mechanism renders the request's language (the API stays English)."""

from __future__ import annotations

import ast
import pickle
import re
import string
from pathlib import Path

import gradio as gr
import pytest

from mmdemo import i18n
from mmdemo.errors import InputError, ModelUnavailableError, VisitorError
from mmdemo.i18n import LOCALES, Message
from mmdemo.ui import i18n as ui_i18n

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmdemo"
UI = PACKAGE / "ui"

# Gradio calls whose first positional argument is text the visitor reads.
TEXT_FIRST = {"Button", "Tab", "TabItem", "Accordion", "Markdown", "Error", "Warning", "Info", "DownloadButton",
              "UploadButton", "DeepLinkButton"}
TEXT_KEYWORDS = {"label", "info", "placeholder", "title", "x_title", "y_title", "description"}
CHOICE_CALLS = {"Radio", "Dropdown", "CheckboxGroup"}
ERROR_CLASSES = {"VisitorError", "InputError", "ModelUnavailableError", "ModelTooLargeError", "BusyError"}
# A line that writes a string on purpose (a model id, a symbol) says so with this marker and a reason.
EXEMPT = "# i18n: not text"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _is_text(node: ast.AST) -> bool:
    """A string literal or f-string with letters in it (a symbol such as "👍" or "·" is not text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[A-Za-z]{2}", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_is_text(part) for part in node.values if isinstance(part, ast.Constant))
    return False


def _gradio_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "gr":
        return func.attr
    return None


def _ui_violations(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []

    def report(node: ast.AST, what: str) -> None:
        line = lines[node.lineno - 1]
        if EXEMPT not in line:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {what}: {line.strip()[:100]}")

    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _gradio_name(node)
        if name is None:
            continue
        if name in TEXT_FIRST and node.args and _is_text(node.args[0]):
            report(node.args[0], f"gr.{name} text")
        for keyword in node.keywords:
            if keyword.arg in TEXT_KEYWORDS and _is_text(keyword.value):
                report(keyword.value, f"gr.{name}({keyword.arg}=...)")
        if name in CHOICE_CALLS:
            choices = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "choices"),
                                                          None)
            if isinstance(choices, ast.List | ast.Tuple):
                for choice in choices.elts:
                    if isinstance(choice, ast.Tuple) and choice.elts and _is_text(choice.elts[0]):
                        report(choice.elts[0], f"gr.{name} choice")
    return found


def test_every_language_has_the_same_keys_and_placeholders():
    reference = i18n.catalogue("en")
    assert len(reference) > 50
    for locale in LOCALES[1:]:
        other = i18n.catalogue(locale)
        assert sorted(set(reference) - set(other)) == [], f"keys missing from {locale}"
        assert sorted(set(other) - set(reference)) == [], f"keys only in {locale}"
        for key, text in reference.items():
            assert _fields(other[key]) == _fields(text), f"{locale} {key}: placeholders differ"


def test_chinese_catalogue_is_chinese():
    """Every Chinese text that has English words in it also has Chinese (a key left in English is caught)."""
    untranslated = [key for key, text in i18n.catalogue("zh-CN").items()
                    if re.search(r"[A-Za-z]{3}", re.sub(r"\{[^}]*\}|<[^>]*>|`[^`]*`", "", text))
                    and not re.search(r"[\u4e00-\u9fff]", text)]
    allowed = {"error.untranslated"}
    assert sorted(set(untranslated) - allowed) == []


def test_no_ui_string_outside_the_catalogue():
    found = [v for path in sorted(UI.rglob("*.py")) for v in _ui_violations(path)]
    assert found == [], "write these with t(key) from mmdemo.ui.i18n:\n" + "\n".join(found)


def test_the_scan_finds_a_written_label(tmp_path):
    """The scan itself: a literal label, button text and choice are found; a key and a symbol are not."""
    module = UI / "_scan_probe.py"
    module.write_text('import gradio as gr\nfrom mmdemo.ui.i18n import t\n'
                      'gr.Textbox(label="Question")\ngr.Button("Run")\ngr.Radio([("Transcribe", "t")])\n'
                      'gr.Button(t("ui.model"))\ngr.Button("👍")\n', encoding="utf-8")
    try:
        found = _ui_violations(module)
    finally:
        module.unlink()
    assert len(found) == 3
    assert any("label=" in f for f in found) and any("gr.Button text" in f for f in found)
    assert any("choice" in f for f in found)


def _raised_errors(path: Path) -> list[tuple[int, ast.Call]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.exc) for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
            and isinstance(node.exc.func, ast.Name) and node.exc.func.id in ERROR_CLASSES]


def test_every_error_the_app_raises_is_a_catalogue_key():
    """Each error's first argument is a key in the catalogue: its stable code, translatable in the UI."""
    unkeyed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, call in _raised_errors(path):
            first = call.args[0] if call.args else None
            key = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if key is None and isinstance(first, ast.Name) and first.id.isupper():
                continue  # a module constant: checked where it is defined (test below)
            if key is None or not i18n.has(key):
                unkeyed.append(f"{path.relative_to(ROOT)}:{line}")
    assert unkeyed == [], "raise these errors with a catalogue key:\n" + "\n".join(unkeyed)


def test_an_error_renders_in_each_language_and_the_api_line_is_english():
    error = InputError("error.unexpected", what="VQA", error="KeyError")
    assert error.code == "error.unexpected"
    assert str(error) == "VQA failed unexpectedly (KeyError); the error was logged: try another input or model"
    assert error.render("zh-CN").startswith("VQA意外失败")
    with i18n.use_locale("zh-CN"):
        assert "意外失败" in error.render()
    assert error.render() == str(error)  # outside a request: English


def test_an_error_keeps_its_code_across_processes():
    error = ModelUnavailableError("error.unexpected", what=Message("task.vqa.title"), error="OSError")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ModelUnavailableError and copy.code == error.code
    assert copy.render("zh-CN") == "视觉问答意外失败（OSError），错误已记录：请换一个输入或模型再试"
    assert str(copy) == str(error)


def test_a_message_parameter_renders_in_the_same_language():
    text = i18n.text("error.unexpected", "zh-CN", what=Message("task.speech.title"), error="E")
    assert text.startswith("语音转文字意外失败")
    assert i18n.text("error.unexpected", "en", what=Message("task.speech.title"), error="E").startswith(
        "Speech to text failed")


def test_unknown_locale_falls_back_to_english():
    assert i18n.text("ui.model", "fr") == "Model"
    with i18n.use_locale("fr") as chosen:
        assert chosen == "en" and i18n.text("ui.model") == "Model"


class _Request:
    def __init__(self, cookies):
        self.cookies = cookies


@pytest.mark.parametrize(("cookies", "locale"), [
    ({"mmdemo-lang": "zh-CN"}, "zh-CN"), ({"mmdemo-lang": "en"}, "en"), ({}, "en"),
    ({"mmdemo-lang": "zh-CN<script>"}, "en"), ({"mmdemo-lang": "fr"}, "en"),
])
def test_the_language_comes_from_the_page_cookie_only(cookies, locale):
    assert ui_i18n.locale_of(_Request(cookies)) == locale
    assert ui_i18n.locale_of(None) == "en"


def test_a_localized_handler_speaks_the_request_language_and_maps_errors():
    def handler(text):
        if text == "bad":
            raise InputError("error.unexpected", what="X", error="Y")
        if text == "boom":
            raise RuntimeError("internal detail")
        return ui_i18n.t("ui.model")

    wrapped = ui_i18n.localized(handler, what="Thing")
    assert wrapped("ok", _Request({"mmdemo-lang": "zh-CN"})) == "模型"
    assert wrapped("ok", None) == "Model"
    with pytest.raises(gr.Error) as failure:
        wrapped("bad", _Request({"mmdemo-lang": "zh-CN"}))
    assert failure.value.message.startswith("X意外失败")
    with pytest.raises(gr.Error) as failure:
        wrapped("boom", _Request({}))
    assert failure.value.message.startswith("Thing failed unexpectedly (RuntimeError)")
    assert "internal detail" not in failure.value.message
    # Gradio sees the request parameter after the handler's own, typed gr.Request.
    import inspect
    parameters = inspect.signature(wrapped).parameters
    assert list(parameters) == ["text", "request"]
    assert wrapped.__annotations__["request"] is gr.Request


def test_a_localized_stream_keeps_the_language_for_every_step():
    def steps(n):
        for _ in range(n):
            yield ui_i18n.t("ui.model")

    wrapped = ui_i18n.localized(steps)
    assert list(wrapped(2, _Request({"mmdemo-lang": "zh-CN"}))) == ["模型", "模型"]


def test_build_time_text_is_a_marker_with_every_language():
    marker = ui_i18n.t("ui.model.missing", model="openai/whisper-base")
    assert marker.key.startswith("ui.model.missing#")
    assert ui_i18n.I18N.translations["en"][marker.key] == "openai/whisper-base (not on this machine)"
    assert ui_i18n.I18N.translations["zh-CN"][marker.key] == "openai/whisper-base（本机没有）"
    assert ui_i18n.t("ui.model").key == "ui.model"


def test_errors_raised_with_plain_text_are_marked_untranslated():
    error = VisitorError("Something plain happened: retry")
    assert error.code == "error.untranslated" and str(error) == "Something plain happened: retry"


def test_model_notes_in_the_catalogue_are_the_specs_notes():
    """The English note of each curated model is its spec's (the catalogue only adds the other languages)."""
    import mmdemo.tasks  # noqa: F401  (registers the tasks)
    from mmdemo import registry
    from mmdemo.tasks.sentiment.task import VADER, VADER_NOTE

    notes = {spec.id: spec.note for name in registry.names() for spec in registry.get(name).models if spec.note}
    notes[VADER] = VADER_NOTE
    english = {key.removeprefix("model.note."): text for key, text in i18n.catalogue("en").items()
               if key.startswith("model.note.")}
    assert english == notes

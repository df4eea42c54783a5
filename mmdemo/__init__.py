"""mmdemo: multimodal transformers demos behind one Gradio app and one shared model cache."""

__version__ = "0.1.0"

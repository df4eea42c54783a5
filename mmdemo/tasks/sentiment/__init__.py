"""The multimodal sentiment task (task.py) with its late fusion of the text, image and speech scores (fusion.py)."""

"""The Ray Serve backend: the tasks' models on Ray Serve deployments, one per task family.

The Gradio front end stays a plain process: its runtime validates and formats as always, and its predictor
(`predictor.RayPredictor`) sends each request's clean inputs to its family's deployment (`deployments.ModelServer`)
through a deployment handle. The families come from the registered tasks (`families`). Each replica keeps its own models
(Serve's model multiplexing, least recently used eviction) and batches the calls that batch well (Serve's request
batching). `serve_config.yaml` sets replicas, GPUs and batching; `python -m mmdemo.serving` starts a local cluster,
deploys and launches the front end.

Importing this package imports nothing from Ray; its modules do.
"""

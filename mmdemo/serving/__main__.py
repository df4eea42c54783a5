"""`python -m mmdemo.serving up | deploy | down`: the Ray Serve backend from the command line.

    up       start a local Ray cluster, deploy every family, launch the Gradio front end on it (Ctrl-C stops all)
    deploy   deploy every family onto a running cluster (MMDEMO_RAY_ADDRESS or --address) and return
    down     delete mmdemo's applications (and the model board) from a running cluster

Flags after `up` that it does not know go to the app (`--port`, `--model-dir`, ... as `python app.py --help`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import replace

from mmdemo.config import settings_from_args, settings_from_env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmdemo.serving", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="local cluster + deployments + front end")
    up.add_argument("--num-cpus", type=float, help="CPUs the local cluster offers (default: enough for the config)")
    deploy = commands.add_parser("deploy", help="deploy onto a running cluster")
    down = commands.add_parser("down", help="delete the deployments from a running cluster")
    for command in (up, deploy):
        command.add_argument("--config", help="Serve config file (env MMDEMO_SERVE_CONFIG; default serve_config.yaml)")
    for command in (deploy, down):
        command.add_argument("--address", help="the cluster (env MMDEMO_RAY_ADDRESS; default auto)")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, app_argv = build_parser().parse_known_args(argv)
    if args.command != "up" and app_argv:
        build_parser().error(f"unrecognized arguments: {' '.join(app_argv)}")

    from mmdemo.serving import cluster
    from mmdemo.serving.config import load_config

    log = logging.getLogger("mmdemo.serving")
    if args.command == "down":
        cluster.connect(args.address or settings_from_env().ray_address)
        cluster.undeploy()
        log.info("Deleted mmdemo's Serve applications")
        return 0
    config = load_config(args.config)
    if args.command == "deploy":
        settings = settings_from_env()
        cluster.connect(args.address or settings.ray_address)
        seconds = cluster.deploy(settings, config)
        log.info("Deployed %s in %.1f s; front end: MMDEMO_BACKEND=ray python app.py", ", ".join(config.deployments),
                 seconds)
        return 0

    from mmdemo.backends import ray_runtime
    from mmdemo.ui import launch

    started = time.perf_counter()
    settings = settings_from_args(app_argv)
    # Ctrl-C and SIGTERM both stop the front end and then the cluster (SIGINT even where a shell ignored it for us).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        address = cluster.start_local(config, num_cpus=args.num_cpus)
        settings = replace(settings, backend="ray", ray_address=address)
        cluster.deploy(settings, config)
        log.info("Ray cluster %s up and every family deployed in %.1f s", address, time.perf_counter() - started)
        launch(settings, runtime=ray_runtime(settings, config=config))
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

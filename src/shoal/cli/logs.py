"""``shoal logs POD``: print a container's log, as ``kubectl logs`` does.

The node writes each container's output to ``NODE_DIR/logs/NAMESPACE_POD_UID/CONTAINER.log``
(see ``docs/node.md``); this command asks the API server for the pod (its uid and containers)
and reads that file from the node's data dir on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import click

from shoal.client import ResourceRef
from shoal.client.http import APIRetryableError, HTTPClient, NotFoundError
from shoal.client.kubeconfig import KubeConfigError, load_kubeconfig
from shoal.node.logs import follow, log_dir, pod_log_dirs, read_tail
from shoal.node.settings import default_node_dir

__all__ = ["logs_command"]


class LogsError(Exception):
    """Printed as is; exit 1."""


async def _find(
    kubeconfig: Path | None, namespace: str | None, pod: str, container: str | None, root: Path
) -> Path:
    logs_root = root / "logs"
    config = load_kubeconfig(kubeconfig, namespace=namespace)
    ns = namespace or config.namespace or "default"
    async with HTTPClient(config) as client:
        try:
            body = await client.get(ResourceRef("v1", "Pod", ns), pod)
        except NotFoundError:
            dirs = pod_log_dirs(logs_root, ns, pod)
            if not dirs:
                raise LogsError(f'Error from server (NotFound): pods "{pod}" not found') from None
            directory = dirs[0]  # a pod that is gone: its newest logs
            names = sorted(p.name[: -len(".log")] for p in directory.glob("*.log"))
        else:
            uid = str(body["metadata"]["uid"])
            directory = log_dir(logs_root, ns, pod, uid)
            names = [str(c["name"]) for c in body.get("spec", {}).get("containers", [])]
    if container is None:
        if len(names) != 1:
            raise LogsError(
                f"error: a container name must be specified for pod {pod}, choose one of: "
                f"[{' '.join(names)}]"
            )
        container = names[0]
    elif container not in names:
        raise LogsError(
            f"error: container {container} is not valid for pod {pod}: choose one of: "
            f"[{' '.join(names)}]"
        )
    path = directory / f"{container}.log"
    if not path.exists() and not path.with_name(path.name + ".1").exists():
        raise LogsError(
            f"error: no log for container {container} of pod {pod} in {directory} (has it "
            "started? is --node-dir the node's data dir?)"
        )
    return path


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


async def _print(path: Path, tail: int | None, keep_following: bool) -> None:
    offset = _size(path)
    data = read_tail(path, tail)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    if not keep_following:
        return
    async for chunk in follow(path, offset):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="The container (needed if several).")
@click.option("-f", "--follow", "keep_following", is_flag=True, help="Keep printing new output.")
@click.option("--tail", type=int, default=-1, help="Lines from the end to show (-1: all).")
@click.option("-n", "--namespace", default=None, help="The namespace (default: the context's).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The kubeconfig (default: $KUBECONFIG, $SHOAL_HOME/kubeconfig or ~/.shoal/kubeconfig).",
)
@click.option(
    "--node-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The node's data dir (default: $SHOAL_NODE_DIR, else $SHOAL_HOME/node or ~/.shoal/node).",
)
def logs_command(
    pod: str,
    container: str | None,
    keep_following: bool,
    tail: int,
    namespace: str | None,
    kubeconfig: Path | None,
    node_dir: Path | None,
) -> None:
    """Print the log of a container of POD (stdout and stderr, as written)."""
    root = node_dir or (
        Path(os.environ["SHOAL_NODE_DIR"]) if os.environ.get("SHOAL_NODE_DIR") else None
    )
    root = (root or default_node_dir()).expanduser()

    async def main() -> None:
        path = await _find(kubeconfig, namespace, pod, container, root)
        await _print(path, None if tail < 0 else tail, keep_following)

    try:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            asyncio.run(main())
    except LogsError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    except KubeConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except APIRetryableError as error:
        click.echo(f"error: cannot reach the server: {error}", err=True)
        sys.exit(1)

"""``shoal sidecar``: helper processes that run beside an app in its pod (tls, config-sync, auth).

Every command takes flags or ``--config FILE`` (YAML, camelCase keys; flags given on the command
line override the file). Problems in the file are reported as ``FILE:LINE:COL: field: message``.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import click

from shoal.errors import ShoalError
from shoal.model._base import ShoalModel
from shoal.model.configfile import load_config_file

__all__ = ["load_settings", "sidecar_group"]

M = TypeVar("M", bound=ShoalModel)

LISTEN_HELP = (
    "Where to accept connections, HOST:PORT (0.0.0.0:PORT in a pod; port 0: any free port)."
)
UPSTREAM_HELP = "The app's plain-HTTP address, HOST:PORT."


def load_settings(model: type[M], config: str | None, flags: dict[str, Any]) -> M:
    """The model from ``--config`` (if given) with the flags that were given on top."""
    given = {name: value for name, value in flags.items() if value is not None and value != ()}
    try:
        if config is not None:
            loaded = load_config_file(config, model)
            merged = {**loaded.model_dump(by_alias=False), **given}
            return model.model_validate(merged)
        return model.model_validate(given)
    except ShoalError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:  # pydantic's ValidationError: flags missing or wrong
        missing = [
            "--" + str(e["loc"][0]).replace("_", "-")
            for e in getattr(error, "errors", list)()
            if e.get("type") == "missing"
        ]
        if missing:
            raise click.UsageError(
                f"missing {', '.join(missing)} (give the flags, or --config FILE)"
            ) from None
        raise click.UsageError(str(error)) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


@click.group("sidecar")
def sidecar_group() -> None:
    """Sidecars: run beside an app in its pod and add what it lacks.

    \b
    tls          HTTPS (and client certificates) in front of a plain-HTTP app
    config-sync  a ConfigMap kept as files in a shared directory; the app is told on change
    auth         bearer-token or basic authentication and a rate limit in front of an app
    """


@sidecar_group.command("tls")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML settings (flags override).")
@click.option("--listen", metavar="HOST:PORT", help=LISTEN_HELP + "  [default: 127.0.0.1:8443]")
@click.option("--upstream", metavar="HOST:PORT", help=UPSTREAM_HELP + "  [default: 127.0.0.1:8080]")
@click.option(
    "--cert", type=click.Path(dir_okay=False), help="PEM certificate chain (reloaded on change)."
)
@click.option(
    "--key", type=click.Path(dir_okay=False), help="PEM private key (reloaded on change)."
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False),
    help="Require client certificates signed by this CA.",
)
@click.option(
    "--reload-interval",
    "reload_interval_seconds",
    type=click.FloatRange(min=0.01),
    help="Seconds between checks of the files.  [default: 1]",
)
@click.option(
    "--min-version",
    type=click.Choice(["TLSv1.2", "TLSv1.3"]),
    help="Lowest TLS version.  [default: TLSv1.2]",
)
@click.option(
    "--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True
)
@click.option("-v", "--verbose", is_flag=True, help="Log reloads and upstream errors.")
def tls_command(config: str | None, loop: str, verbose: bool, **flags: Any) -> None:
    """HTTPS on --listen in front of the plain-HTTP app at --upstream.

    The certificate and key are read from files (in a pod: a Secret volume) and reloaded when
    they change; new handshakes use the new pair, established connections keep theirs, and a
    pair that does not load (a certificate copied before its key) is not used. Requests reach the
    app with X-Forwarded-Proto: https and X-Forwarded-For. Prints `listening on HOST:PORT`.
    """
    from shoal.components.sidecars._serve import run
    from shoal.components.sidecars.tls import TLSConfig, run_tls_sidecar

    _logging(verbose)
    settings = load_settings(TLSConfig, config, flags).settings()
    try:
        run(lambda: run_tls_sidecar(settings), loop)
    except ShoalError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@sidecar_group.command("auth")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML settings (flags override).")
@click.option("--listen", metavar="HOST:PORT", help=LISTEN_HELP + "  [default: 127.0.0.1:8081]")
@click.option("--upstream", metavar="HOST:PORT", help=UPSTREAM_HELP + "  [default: 127.0.0.1:8080]")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Bearer tokens, one per line: token[,user[,uid[,groups]]] (Kubernetes' static token file).",
)
@click.option(
    "--basic-auth-file",
    type=click.Path(dir_okay=False),
    help="Basic users, one per line: user:{SHA256}base64, user:{SHA}base64 or user:{PLAIN}password.",
)
@click.option("--realm", help="The realm named in WWW-Authenticate.  [default: shoal]")
@click.option("--rate", metavar="N/s", help="Requests allowed per second (N/s, N/m, N/h).")
@click.option(
    "--burst", type=click.IntRange(min=1), help="Requests allowed at once.  [default: the rate]"
)
@click.option(
    "--per",
    type=click.Choice(["client", "global"]),
    help="One rate bucket per client address, or one for all.  [default: client]",
)
@click.option(
    "--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True
)
@click.option("-v", "--verbose", is_flag=True, help="Log upstream errors (never credentials).")
def auth_command(config: str | None, loop: str, verbose: bool, **flags: Any) -> None:
    """Authentication and a rate limit on --listen in front of the app at --upstream.

    Requests without valid credentials get 401 with WWW-Authenticate; requests over the rate get
    429 with Retry-After; neither reaches the app. Accepted requests reach it without the
    Authorization field and with X-Forwarded-User. Prints `listening on HOST:PORT`.
    """
    from shoal.components.sidecars._serve import run
    from shoal.components.sidecars.auth import AuthConfig, run_auth_sidecar

    _logging(verbose)
    try:
        settings = load_settings(AuthConfig, config, flags).settings()
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        run(lambda: run_auth_sidecar(settings), loop)
    except ShoalError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@sidecar_group.command("config-sync")
@click.option("--config", type=click.Path(dir_okay=False), help="YAML settings (flags override).")
@click.option("--configmap", metavar="NAME", help="The ConfigMap to keep as files.")
@click.option("--namespace", "-n", help="Its namespace.  [default: the kubeconfig context's]")
@click.option("--dir", type=click.Path(file_okay=False), help="The shared directory for the files.")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Credentials for the API.  [default: $KUBECONFIG, ~/.shoal/kubeconfig, ~/.kube/config]",
)
@click.option("--signal", metavar="NAME", help="Signal the app on change (HUP, USR1...).")
@click.option("--pid-file", type=click.Path(dir_okay=False), help="File with the app's process id.")
@click.option("--notify-url", metavar="URL", help="POST a JSON note to the app on change.")
@click.option(
    "--notify-initial/--no-notify-initial",
    default=None,
    help="Also tell the app after the first write.  [default: no]",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every write.")
def config_sync_command(config: str | None, verbose: bool, **flags: Any) -> None:
    """Keep ConfigMap --configmap's data as files in --dir; tell the app when it changes.

    The files are swapped in atomically as the kubelet does (a `..data` symlink to a hidden
    timestamped directory, one visible symlink per key), so the app never reads half an update.
    After a change the app gets --signal (sent to the pid in --pid-file) or a POST to
    --notify-url. Credentials come from a kubeconfig: in shoal's one-machine cluster the node
    sets KUBECONFIG for every container; elsewhere pass --kubeconfig.
    """
    from shoal.components.sidecars._serve import run
    from shoal.components.sidecars.configsync import ConfigSyncConfig, run_config_sync

    _logging(verbose)
    settings = load_settings(ConfigSyncConfig, config, flags).settings()
    try:
        run(lambda: run_config_sync(settings))
    except ShoalError as error:
        raise click.ClickException(str(error)) from None

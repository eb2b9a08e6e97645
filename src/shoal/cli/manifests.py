"""``shoal validate`` and ``shoal render``: check manifests, and turn them into Kubernetes YAML."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from shoal.errors import InvalidObjectsError, RenderError
from shoal.kube.render import RenderSettings, render
from shoal.model import KubeObject, load_manifests
from shoal.patterns import CompileSettings

FILES_HELP = (
    "A YAML/JSON file, a directory (searched recursively) or - for standard input. Repeatable."
)


def _load_or_exit(paths: Sequence[str]) -> list[KubeObject]:
    try:
        return load_manifests(paths, stdin=sys.stdin)
    except InvalidObjectsError as error:
        for issue in error.issues:
            click.echo(str(issue), err=True)
        count = len(error.issues)
        click.echo(f"error: {count} problem{'s' if count != 1 else ''} found", err=True)
        sys.exit(1)


@click.command("validate")
@click.option("-f", "--filename", "paths", multiple=True, required=True, help=FILES_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when everything is valid.")
def validate_command(paths: tuple[str, ...], quiet: bool) -> None:
    """Check manifests: every problem is printed as FILE:LINE:COLUMN: FIELD: MESSAGE.

    Exits 0 when every object is valid, 1 otherwise.
    """
    objects = _load_or_exit(paths)
    if not quiet:
        for obj in objects:
            namespace = f" (namespace {obj.namespace})" if obj.namespace else ""
            click.echo(
                f"{obj.api_version} {obj.kind} {obj.metadata.name or obj.metadata.generate_name}{namespace}: valid"
            )
        click.echo(f"{len(objects)} object{'s' if len(objects) != 1 else ''} valid")


@click.command("render")
@click.option("-f", "--filename", "paths", multiple=True, required=True, help=FILES_HELP)
@click.option(
    "--target",
    type=click.Choice(["kubernetes"]),
    default="kubernetes",
    show_default=True,
    help="What to render for.",
)
@click.option(
    "--shoal-image",
    default=CompileSettings().shoal_image,
    show_default=True,
    help="The image with the shoal command, which runs the shard router.",
)
@click.option(
    "--crds/--no-crds",
    default=True,
    show_default=True,
    help="Emit the CRDs of shoal's kinds first.",
)
def render_command(paths: tuple[str, ...], target: str, shoal_image: str, crds: bool) -> None:
    """Print manifests for TARGET: CRDs, the objects, and what the patterns compile to.

    The output is multi-document YAML for `kubectl apply -f -`.
    """
    objects = _load_or_exit(paths)
    settings = RenderSettings(compile=CompileSettings(shoal_image=shoal_image), include_crds=crds)
    try:
        manifests = render(objects, target=target, settings=settings)
    except RenderError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(manifests.to_yaml(), nl=False)

# The one shoal image: the `shoal` command, whose entrypoints rendered manifests use
# (the shard router runs `shoal proxy --config ...`).
#
# NOT BUILT OR TESTED HERE: the project's machines have no container engine. It is kept minimal
# and conventional so that `docker build -t ghcr.io/shoal-dev/shoal:0.1.0 .` works elsewhere;
# pass another name to `shoal render --shoal-image`.
FROM python:3.11-slim

WORKDIR /opt/shoal
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[fast]" && useradd --uid 65532 --no-create-home shoal

USER 65532:65532
ENTRYPOINT ["shoal"]
CMD ["--help"]

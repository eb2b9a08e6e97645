"""Ready-made single-node components: sidecars, ambassadors and adapters (``shoal sidecar|ambassador|adapter``).

Each one is a small process that runs as a container of any pod (in the one-machine cluster and, from
the shoal image, on Kubernetes) and standalone. Those that proxy are built on the data plane's engine.
"""

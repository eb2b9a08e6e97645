"""Rendering to Kubernetes: manifests for the built-in kinds, CRDs for shoal's own kinds."""

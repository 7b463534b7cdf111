"""Deployment: settings, the local stack of real servers, and the container images."""

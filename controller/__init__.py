"""surgecast controller: scaling policy, replay simulator, and the Kubernetes controller.

The policy is pure computation over plain data; Kubernetes and Prometheus I/O live in their
own modules at the edge.
"""

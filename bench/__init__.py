"""The benchmarks: tools that print figures (see README.md).

Run each as ``python -m bench.<name>`` from the repository root.
"""

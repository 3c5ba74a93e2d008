"""The driver: running a plan through an executor, writing each result and its record, and
reporting.
"""

"""Prefect 3 flows that wire the stages of :mod:`pipeline` together."""

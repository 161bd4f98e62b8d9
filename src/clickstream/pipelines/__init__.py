"""Prefect glue, thin: the bodies of the store flow, the backfill orchestrator and the
operator actions (bootstrap, unstick, doctor), over clickstream.core and clickstream.adapters.

Never imported by clickstream.core, adapters, local or warm.
"""

"""The warm server: one interpreter with Prefect, dbt and this package imported, forking
one flow run per request from clickstream.launch. May import clickstream.launch only.
"""

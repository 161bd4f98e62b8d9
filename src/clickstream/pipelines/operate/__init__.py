"""Operating the deployed system: bootstrap (work pool, dbt-global, automations), unstick,
the doctor's reads.
"""

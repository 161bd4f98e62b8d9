"""How dbt is run: the exact command line, prefect-dbt's runner (full or lean), and the one
function that invokes a build (environment, warehouse lock, read-back).
"""

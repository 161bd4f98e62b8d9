{#- One test for several columns: fails for rows where any of them is null. One node instead
    of one per column keeps a partition build short (each node is a Prefect task). -#}
{% test not_null_columns(model, columns) %}
    select *
    from {{ model }}
    where {% for col in columns %}{{ col }} is null{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}

{#- One test for several metric columns: fails for rows where any of them is negative. -#}
{% test non_negative_columns(model, columns) %}
    select *
    from {{ model }}
    where {% for col in columns %}{{ col }} < 0{% if not loop.last %} or {% endif %}{% endfor %}
{% endtest %}

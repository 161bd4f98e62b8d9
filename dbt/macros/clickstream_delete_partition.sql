{#- pre_hook of the incremental models. delete+insert alone only deletes keys present in the
    new rows, so a rerun that now yields no rows for (store_id, ds) would leave stale ones.
    Runs inside the model's transaction: if the insert fails, the delete is rolled back. -#}
{% macro clickstream_delete_partition() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ clickstream_partition_filter() }}
    {%- endif -%}
{%- endmacro %}

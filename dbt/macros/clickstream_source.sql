{#- Raw events for the current store, read where the target keeps them. The models call only
    clickstream_source_events(), so they are identical on every target. -#}

{% macro clickstream_source_events() -%}
    {{ return(adapter.dispatch('clickstream_source_events', 'clickstream')()) }}
{%- endmacro %}

{#- Postgres (and any other target): the loaded table raw.events, shared by all stores. -#}
{% macro default__clickstream_source_events() -%}
    (
        select event_id, store_id, user_id, session_key, event_type, event_ts, loaded_at,
            product_id, order_id, revenue_usd, device
        from {{ source('raw', 'events') }}
        where store_id = '{{ var("store_id") }}'
    )
{%- endmacro %}

{#- DuckDB: the store's Parquet landing files. The hive `ds` filter reads only the landing
    folders (store-local dates) that can hold events of the input range, as the partition spec
    lists them, so the scan stays small however much history has landed. -#}
{% macro duckdb__clickstream_source_events() -%}
    {%- set pattern = clickstream_landing_dir() ~ '/' ~ var('store_id') ~ '/*/*.parquet' -%}
    {%- if execute -%}
        {%- set found = run_query(
            "select count(*) from glob('" ~ pattern | replace("'", "''") ~ "')"
        ).columns[0].values()[0] -%}
        {%- if found == 0 -%}
            {{ exceptions.raise_compiler_error(
                "clickstream: no landing files for store '" ~ var('store_id') ~ "' match "
                ~ pattern ~ ". Generate or land data first (clickstream.local.synthetic.generate), "
                ~ "or pass --vars landing_dir / set CLICKSTREAM_LANDING_DIR to the right folder."
            ) }}
        {%- endif -%}
    {%- endif -%}
    {%- set spec = clickstream_spec() -%}
    (
        select event_id, store_id, user_id, session_key, event_type, event_ts, loaded_at,
            product_id, order_id, revenue_usd, device
        from read_parquet(
            '{{ pattern | replace("'", "''") }}',
            hive_partitioning = true,
            union_by_name = true
        )
        where ds between date '{{ spec['landing_first'] }}' and date '{{ spec['landing_last'] }}'
    )
{%- endmacro %}

{% macro clickstream_landing_dir() -%}
    {%- set configured = var('landing_dir', '') -%}
    {%- if configured -%}
        {{ return(configured | string) }}
    {%- endif -%}
    {#- Relative to the working directory: right when dbt runs from the repo root. -#}
    {{ return(env_var('CLICKSTREAM_LANDING_DIR', '.clickstream/landing')) }}
{%- endmacro %}

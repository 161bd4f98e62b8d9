{#- The partition's bounds as SQL literals. Vars arrive as naive-UTC strings
    ('%Y-%m-%d %H:%M:%S'); arithmetic happens here in Jinja so the SQL only ever compares
    against constants, identically on DuckDB and Postgres. -#}

{% macro clickstream_parse_ts(value) -%}
    {{ return(modules.datetime.datetime.strptime(value | string, '%Y-%m-%d %H:%M:%S')) }}
{%- endmacro %}

{% macro clickstream_lookback_start_dt() -%}
    {%- set lookback = var('session_lookback_minutes') | int -%}
    {%- if lookback < (var('session_gap_minutes') | int) -%}
        {{ exceptions.raise_compiler_error(
            "clickstream: session_lookback_minutes (" ~ lookback ~ ") must be >= "
            ~ "session_gap_minutes (" ~ var('session_gap_minutes') ~ ") to find session starts"
        ) }}
    {%- endif -%}
    {{ return(clickstream_parse_ts(var('window_start'))
        - modules.datetime.timedelta(minutes=lookback)) }}
{%- endmacro %}

{% macro clickstream_ts_literal(value) -%}
    cast('{{ value.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp)
{%- endmacro %}

{% macro clickstream_window_start() -%}
    {{ clickstream_ts_literal(clickstream_parse_ts(var('window_start'))) }}
{%- endmacro %}

{% macro clickstream_window_end() -%}
    {{ clickstream_ts_literal(clickstream_parse_ts(var('window_end'))) }}
{%- endmacro %}

{% macro clickstream_lookback_start() -%}
    {{ clickstream_ts_literal(clickstream_lookback_start_dt()) }}
{%- endmacro %}

{% macro clickstream_ds() -%}
    cast('{{ var("ds") }}' as date)
{%- endmacro %}

{% macro clickstream_store_id() -%}
    '{{ var("store_id") | replace("'", "''") }}'
{%- endmacro %}

{#- Test filter: only the partition being built, so test cost stays flat as history grows. -#}
{% macro clickstream_partition_filter() -%}
    store_id = {{ clickstream_store_id() }} and ds = {{ clickstream_ds() }}
{%- endmacro %}

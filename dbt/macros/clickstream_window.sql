{#- The partitions one invocation builds: the partition spec.

    One store, one or more store-local days, each with its half-open UTC window, plus the input
    range [input_start, input_end) of raw events the build reads and the landing folders
    (store-local dates landing_first .. landing_last) that can hold them. Python computes every
    value (src/clickstream/core/partition_spec.py, from src/clickstream/core/windows.py); the SQL here only
    compares against those constants, identically on DuckDB and Postgres.

    Where it comes from, first match wins:
    1. var('partition_spec'): a dict (unit tests; a hand run may pass it with --vars).
    2. env var CLICKSTREAM_PARTITION_SPEC (JSON), read only while executing: the flows pass the
       spec this way so that --vars stay the same for every build of a store and dbt's partial
       parsing survives from one partition to the next.
    3. The one-day default built from the vars ds, window_start, window_end, input_start,
       landing_first and landing_last in dbt_project.yml, so a plain `dbt build` works.
-#}

{% macro clickstream_spec() -%}
    {%- set spec = var('partition_spec', none) -%}
    {%- if spec is none and execute -%}
        {%- set raw = env_var('CLICKSTREAM_PARTITION_SPEC', '') -%}
        {%- if raw -%}
            {%- set spec = fromjson(raw) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if spec is none -%}
        {%- set spec = {
            'store_id': var('store_id'),
            'days': [[var('ds'), var('window_start'), var('window_end')]],
            'input_start': var('input_start'),
            'input_end': var('window_end'),
            'landing_first': var('landing_first'),
            'landing_last': var('landing_last'),
        } -%}
    {%- endif -%}
    {%- if execute -%}
        {{ clickstream_check_spec(spec) }}
    {%- endif -%}
    {{ return(spec) }}
{%- endmacro %}

{% macro clickstream_check_spec(spec) -%}
    {%- set problems = [] -%}
    {%- if spec.get('store_id') != var('store_id') -%}
        {%- do problems.append("it is for store '" ~ spec.get('store_id') ~ "' but this build is for '" ~ var('store_id') ~ "'") -%}
    {%- endif -%}
    {%- set days = spec.get('days') or [] -%}
    {%- if not days -%}
        {%- do problems.append('it lists no days') -%}
    {%- else -%}
        {%- set gap = modules.datetime.timedelta(minutes=var('session_gap_minutes') | int) -%}
        {%- if clickstream_parse_ts(spec['input_start']) > clickstream_parse_ts(days[0][1]) - gap -%}
            {%- do problems.append('input_start ' ~ spec['input_start'] ~ ' must be at least session_gap_minutes before the first window_start ' ~ days[0][1]) -%}
        {%- endif -%}
        {%- if clickstream_parse_ts(spec['input_end']) < clickstream_parse_ts(days[-1][2]) -%}
            {%- do problems.append('input_end ' ~ spec['input_end'] ~ ' is before the last window_end ' ~ days[-1][2]) -%}
        {%- endif -%}
        {%- for day in days -%}
            {%- if clickstream_parse_ts(day[1]) >= clickstream_parse_ts(day[2]) -%}
                {%- do problems.append('day ' ~ day[0] ~ ' has an empty window') -%}
            {%- endif -%}
            {%- if not loop.first and clickstream_parse_ts(day[1]) < clickstream_parse_ts(days[loop.index0 - 1][2]) -%}
                {%- do problems.append('day ' ~ day[0] ~ ' overlaps the day before it') -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if problems -%}
        {{ exceptions.raise_compiler_error("clickstream: bad partition spec: " ~ (problems | join('; '))) }}
    {%- endif -%}
{%- endmacro %}

{% macro clickstream_parse_ts(value) -%}
    {{ return(modules.datetime.datetime.strptime(value | string, '%Y-%m-%d %H:%M:%S')) }}
{%- endmacro %}

{% macro clickstream_ts_literal(value) -%}
    cast('{{ value }}' as timestamp)
{%- endmacro %}

{% macro clickstream_input_start() -%}
    {{ clickstream_ts_literal(clickstream_spec()['input_start']) }}
{%- endmacro %}

{% macro clickstream_input_end() -%}
    {{ clickstream_ts_literal(clickstream_spec()['input_end']) }}
{%- endmacro %}

{% macro clickstream_store_id() -%}
    '{{ var("store_id") | replace("'", "''") }}'
{%- endmacro %}

{#- One row per partition day: ds, window_start_utc, window_end_utc. -#}
{% macro clickstream_partition_days() -%}
    select
        cast(ds as date) as ds,
        cast(window_start_utc as timestamp) as window_start_utc,
        cast(window_end_utc as timestamp) as window_end_utc
    from (
        values
        {%- for day in clickstream_spec()['days'] %}
            ('{{ day[0] }}', '{{ day[1] }}', '{{ day[2] }}'){{ "," if not loop.last }}
        {%- endfor %}
    ) as partition_days (ds, window_start_utc, window_end_utc)
{%- endmacro %}

{#- The rows of the partitions being built: pre_hook deletes and data test scopes. -#}
{% macro clickstream_partition_filter() -%}
    store_id = {{ clickstream_store_id() }} and ds in (
        {%- for day in clickstream_spec()['days'] -%}
            cast('{{ day[0] }}' as date){{ ", " if not loop.last }}
        {%- endfor -%}
    )
{%- endmacro %}

{#- dbt renders a data test's `where` config once, when it parses the project, so a `where`
    naming the partition would be frozen into the manifest and partial parsing would keep it
    for the next partition. Tests written `where: clickstream_partition` are scoped here, when
    the test runs, to the partitions of this invocation. Any other `where` behaves as in dbt. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'clickstream_partition' -%}
        {%- set where = clickstream_partition_filter() -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

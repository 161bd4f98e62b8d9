{#- Sessions of the partitions being built: a user's events belong to one session until a gap
    longer than session_gap_minutes. A session belongs to the partition day its first event
    falls in; sessions that began before the first day (seen in the lookback) are not written.
    A session running over local midnight is cut at its day's window_end: its later events
    count in the next day's events but in no session. So each day's rows are exactly what a
    build of that day alone gives, and never depend on data after the day's window. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['store_id', 'ds'],
    on_schema_change='fail',
    pre_hook="{{ clickstream_delete_partition() }}"
) }}

with events as (

    select store_id, event_id, user_id, event_type, event_ts, revenue_usd, ds
    from {{ ref('stg_clickstream__events') }}

),

ordered as (

    select
        *,
        lag(event_ts) over (partition by user_id order by event_ts, event_id) as prev_event_ts
    from events

),

flagged as (

    select
        *,
        case
            when prev_event_ts is null then 1
            when event_ts > {{ dbt.dateadd('minute', var('session_gap_minutes') | int, 'prev_event_ts') }}
                then 1
            else 0
        end as starts_session
    from ordered

),

numbered as (

    select
        *,
        sum(starts_session) over (
            partition by user_id
            order by event_ts, event_id
            rows between unbounded preceding and current row
        ) as user_session_number
    from flagged

),

assigned as (

    select
        *,
        -- The partition day of the session's first event (null: it began in the lookback).
        first_value(ds) over (
            partition by user_id, user_session_number
            order by event_ts, event_id
            rows between unbounded preceding and unbounded following
        ) as session_ds
    from numbered

),

sessions as (

    select
        store_id,
        session_ds as ds,
        user_id,
        user_session_number,
        min(event_ts) as session_start_ts,
        max(event_ts) as session_end_ts,
        count(*) as events,
        sum(case when event_type = 'page_view' then 1 else 0 end) as page_views,
        sum(case when event_type = 'product_view' then 1 else 0 end) as product_views,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as add_to_carts,
        sum(case when event_type = 'checkout' then 1 else 0 end) as checkouts,
        sum(case when event_type = 'purchase' then 1 else 0 end) as purchases,
        sum(revenue_usd) as revenue_usd
    from assigned
    -- Only the events of the session's own day: the cut at that day's window_end.
    where session_ds is not null and ds = session_ds
    group by store_id, session_ds, user_id, user_session_number

),

final as (

    select
        store_id,
        ds,
        {{ dbt.hash("store_id || '|' || user_id || '|' || cast(session_start_ts as varchar)") }}
            as session_id,
        user_id,
        session_start_ts,
        session_end_ts,
        cast(events as bigint) as events,
        cast(page_views as bigint) as page_views,
        cast(product_views as bigint) as product_views,
        cast(add_to_carts as bigint) as add_to_carts,
        cast(checkouts as bigint) as checkouts,
        cast(purchases as bigint) as purchases,
        cast(coalesce(revenue_usd, 0) as decimal(18, 2)) as revenue_usd,
        purchases > 0 as is_converted
    from sessions

)

select * from final

{#- Sessions of one partition: a user's events belong to one session until a gap longer than
    session_gap_minutes. Events from the lookback are seen so that a session that began
    before local midnight is recognised as such and NOT written here (it belongs to the day
    it started in). Events after window_end are not read: a session running over the next
    midnight is cut at window_end, which keeps a partition independent of later data. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['store_id', 'ds'],
    on_schema_change='fail',
    pre_hook="{{ clickstream_delete_partition() }}"
) }}

with events as (

    select store_id, event_id, user_id, event_type, event_ts, revenue_usd
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

sessions as (

    select
        store_id,
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
    from numbered
    group by store_id, user_id, user_session_number

),

final as (

    select
        store_id,
        {{ clickstream_ds() }} as ds,
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
    where session_start_ts >= {{ clickstream_window_start() }}
      and session_start_ts < {{ clickstream_window_end() }}

)

select * from final

{#- Deduplicated events of one store over the input range [input_start, input_end): the
    windows of the partitions being built plus the session lookback before the first one.
    Each event carries the partition day whose window holds it; `ds` is null for events read
    only as session context (the lookback, or a day in the range that is not being built).
    A table (rebuilt every run) rather than a view, so the tests and both downstream models
    see one consistent snapshot even if files land mid-build. -#}
{{ config(materialized='table') }}

with partition_days as (

    {{ clickstream_partition_days() }}

),

source as (

    select *
    from {{ clickstream_source_events() }} as src
    where event_ts >= {{ clickstream_input_start() }}
      and event_ts < {{ clickstream_input_end() }}

),

renamed as (

    select
        cast(event_id as varchar) as event_id,
        cast(store_id as varchar) as store_id,
        cast(user_id as varchar) as user_id,
        cast(session_key as varchar) as source_session_key,
        cast(event_type as varchar) as event_type,
        cast(event_ts as timestamp) as event_ts,
        cast(loaded_at as timestamp) as loaded_at,
        cast(product_id as varchar) as product_id,
        cast(order_id as varchar) as order_id,
        cast(revenue_usd as decimal(12, 2)) as revenue_usd,
        cast(device as varchar) as device
    from source

),

ranked as (

    select
        *,
        -- A re-sent event repeats id, timestamp and payload; keep the first arrival.
        row_number() over (
            partition by event_id
            order by loaded_at, source_session_key, event_type
        ) as arrival_rank
    from renamed

),

deduped as (

    select * from ranked where arrival_rank = 1

),

final as (

    select
        e.event_id,
        e.store_id,
        e.user_id,
        e.source_session_key,
        e.event_type,
        e.event_ts,
        e.loaded_at,
        e.product_id,
        e.order_id,
        e.revenue_usd,
        e.device,
        d.ds
    from deduped as e
    left join partition_days as d
        on e.event_ts >= d.window_start_utc
        and e.event_ts < d.window_end_utc

)

select * from final

{#- Deduplicated events of one store over [window_start - lookback, window_end).
    A table (rebuilt every run) rather than a view, so the tests and both downstream models
    see one consistent snapshot even if files land mid-build. -#}
{{ config(materialized='table') }}

with source as (

    select *
    from {{ clickstream_source_events() }} as src
    where event_ts >= {{ clickstream_lookback_start() }}
      and event_ts < {{ clickstream_window_end() }}

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
        event_id,
        store_id,
        user_id,
        source_session_key,
        event_type,
        event_ts,
        loaded_at,
        product_id,
        order_id,
        revenue_usd,
        device,
        event_ts >= {{ clickstream_window_start() }} as is_in_window
    from deduped

)

select * from final

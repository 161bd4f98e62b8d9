"""The DuckDB query that simulates a day of sessions and events for the synthetic source."""

SIMULATE_SQL = """
CREATE OR REPLACE TEMP TABLE events AS
WITH sess AS (
    SELECT d.ds AS sday, d.ws, d.we, d.next_we, d.profile, s.i AS sess
    FROM days d, LATERAL (SELECT unnest(range(d.n_sessions)) AS i) s
),
drawn AS (
    SELECT *,
        rnd($seed, $store, sday, sess, 'hour') AS u_hour,
        rnd($seed, $store, sday, sess, 'second') AS u_sec,
        rnd($seed, $store, sday, sess, 'pv') AS u_pv,
        rnd($seed, $store, sday, sess, 'prod') AS u_prod,
        rnd($seed, $store, sday, sess, 'nprod') AS u_nprod,
        rnd($seed, $store, sday, sess, 'atc') AS u_atc,
        rnd($seed, $store, sday, sess, 'co') AS u_co,
        rnd($seed, $store, sday, sess, 'pur') AS u_pur,
        rnd($seed, $store, sday, sess, 'pace') AS u_pace,
        rnd($seed, $store, sday, sess, 'loyal') AS u_loyal,
        rnd($seed, $store, sday, sess, 'user') AS u_user,
        rnd($seed, $store, sday, sess, 'device') AS u_device
    FROM sess
),
shaped AS (
    SELECT d.*,
        h.hour,
        -- Funnel: every session browses; fewer view products, add, check out, buy.
        least(25, 1 + floor(-ln(1 - u_pv) * 2.5))::INT AS n_pv,
        CASE WHEN u_prod < 0.6 THEN 1 + floor(-ln(1 - u_nprod) * 1.5) ELSE 0 END::INT AS n_prod0,
        -- Per-session pace: typical gap between events, 10 s to ~8 min.
        (10 + floor(u_pace * u_pace * 480))::INT AS pace_s,
        CASE WHEN u_loyal < 0.35
            THEN 'u' || lpad((floor(u_user * $loyal_pool))::BIGINT::VARCHAR, 9, '0')
            ELSE 'u' || lpad(($loyal_pool + floor(u_user * $casual_pool))::BIGINT::VARCHAR, 9, '0')
        END AS user_id,
        CASE WHEN u_device < 0.58 THEN 'mobile' WHEN u_device < 0.92 THEN 'desktop'
             ELSE 'tablet' END AS device
    FROM drawn d
    JOIN hours h ON h.profile = d.profile AND d.u_hour >= h.lo AND d.u_hour < h.hi
),
counted AS (
    SELECT *,
        least(n_prod0, n_pv) AS n_prod,
        (least(n_prod0, n_pv) > 0 AND u_atc < 0.30)::INT AS n_atc,
        (least(n_prod0, n_pv) > 0 AND u_atc < 0.30 AND u_co < 0.50)::INT AS n_co,
        (least(n_prod0, n_pv) > 0 AND u_atc < 0.30 AND u_co < 0.50 AND u_pur < 0.65)::INT AS n_pur,
        -- Session start inside the local day, following the hourly profile.
        ws + to_seconds(floor((hour + u_sec) / 24.0 * epoch(we - ws))::BIGINT) AS start_ts
    FROM shaped
),
exploded AS (
    SELECT c.*, k.k
    FROM counted c,
        LATERAL (SELECT unnest(range(c.n_pv + c.n_prod + c.n_atc + c.n_co + c.n_pur)) AS k) k
),
typed AS (
    SELECT *,
        CASE
            WHEN k < n_pv + n_prod THEN
                CASE WHEN k % 2 = 1 AND k < 2 * n_prod THEN 'product_view' ELSE 'page_view' END
            WHEN k = n_pv + n_prod AND n_atc = 1 THEN 'add_to_cart'
            WHEN k = n_pv + n_prod + n_atc AND n_co = 1 THEN 'checkout'
            ELSE 'purchase'
        END AS event_type,
        -- t_k = k*pace + jitter_k with jitter < pace: strictly increasing, gaps < 2*pace.
        start_ts + to_seconds(
            k * pace_s + floor(rnd6($seed, $store, sday, sess, k, 'jitter') * pace_s)::BIGINT
        ) AS event_ts,
        rnd6($seed, $store, sday, sess, k, 'product') AS u_product,
        rnd6($seed, $store, sday, sess, k, 'browse') AS u_browse,
        rnd6($seed, $store, sday, sess, k, 'revenue') AS u_revenue,
        rnd6($seed, $store, sday, sess, k, 'delay') AS u_delay,
        rnd6($seed, $store, sday, sess, k, 'late') AS u_late,
        rnd6($seed, $store, sday, sess, k, 'late_by') AS u_late_by,
        rnd6($seed, $store, sday, sess, k, 'dup') AS u_dup,
        rnd6($seed, $store, sday, sess, k, 'dup_by') AS u_dup_by
    FROM exploded
),
placed AS (
    SELECT *,
        CASE WHEN event_ts >= we THEN sday + 1 ELSE sday END AS ds,
        CASE WHEN event_ts >= we THEN next_we ELSE we END AS ds_end
    FROM typed
),
rows AS (
    SELECT
        ds,
        md5(concat_ws(':', $seed, $store, sday, sess, k)) AS event_id,
        $store AS store_id,
        user_id,
        $store || ':' || strftime(sday, '%Y-%m-%d') || ':' || sess::VARCHAR AS session_key,
        event_type,
        event_ts,
        CASE
            -- Late: arrives 1 h to 2 days after the event's local day has ended.
            WHEN u_late < $late_share
                THEN ds_end + to_seconds((3600 + floor(u_late_by * 47 * 3600))::BIGINT)
            ELSE event_ts + to_seconds((1 + floor(-ln(1 - u_delay) * 20))::BIGINT)
        END AS loaded_at,
        CASE
            WHEN event_type IN ('product_view', 'add_to_cart')
                OR (event_type = 'page_view' AND u_browse < 0.2)
                THEN 'p' || lpad(floor(u_product * u_product * 5000)::BIGINT::VARCHAR, 5, '0')
        END AS product_id,
        CASE WHEN event_type = 'purchase'
            THEN 'o-' || substr(md5(concat_ws(':', 'order', $seed, $store, sday, sess)), 1, 16)
        END AS order_id,
        CASE WHEN event_type = 'purchase'
            THEN round(15 + u_revenue * u_revenue * 285, 2)::DECIMAL(12,2)
        END AS revenue_usd,
        device,
        u_dup,
        u_dup_by
    FROM placed
)
SELECT ds, {cols} FROM rows
UNION ALL
-- Re-sent copies: identical event, loaded again 1 min to 6 h later.
SELECT ds, event_id, store_id, user_id, session_key, event_type, event_ts,
    loaded_at + to_seconds((60 + floor(u_dup_by * 6 * 3600))::BIGINT) AS loaded_at,
    product_id, order_id, revenue_usd, device
FROM rows WHERE u_dup < $dup_share
"""

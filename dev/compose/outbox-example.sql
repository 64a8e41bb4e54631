-- Ten outbox rows, as seed 002's insertMessages.sql adds ten messages: what
-- an application writes in the same transaction as its business change.
-- `custodian relay` publishes them to `transactions` (key: the aggregate id)
-- and custodian consumes them into the projection; follow one with
--   SELECT event_id, published_at, kafka_partition, kafka_offset FROM outbox;
--   curl -H "Authorization: Bearer $TOKEN" localhost:8080/messages/<event_id>
-- Run: docker compose --profile outbox up outbox-example
--   (or: docker compose exec -T postgres psql -U custodian < dev/compose/outbox-example.sql)
BEGIN;
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, topic, payload)
SELECT 'transaction',
       'outbox-demo-' || (n % 3),
       CASE WHEN n < 3 THEN 'transaction.created' ELSE 'transaction.updated' END,
       'transactions',
       convert_to(json_build_object(
           'event_type', CASE WHEN n < 3 THEN 'transaction.created' ELSE 'transaction.updated' END,
           'transaction', json_build_object(
               'id', 'outbox-demo-' || (n % 3),
               'user_id', 'outbox_user',
               'transaction_type', 'card',
               'status', CASE WHEN n < 9 THEN 'pending' ELSE 'completed' END,
               'currency', 'USD',
               'amount', 10 + n,
               'metadata', json_build_object('merchant_name', 'Outbox Coffee')),
           'timestamp', to_char((now() + n * interval '1 second') AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS"Z"'))::text, 'UTF8')
  FROM generate_series(0, 9) AS n
 ORDER BY n;
COMMIT;

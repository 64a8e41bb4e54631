-- Full-text search over the transaction projection (seed 003 indexes the
-- same documents in Elasticsearch). A generated column keeps the tsvector in
-- step with every upsert, in the same statement, so a search never sees a
-- row whose text and vector disagree; the GIN index (fastupdate on, the
-- default) takes most of its maintenance cost off the write path. The
-- README has the write-throughput figures behind that choice.
--
-- The `simple` configuration: merchant, peer and asset names are names, not
-- English words to stem. Weights rank a hit on the counterparty-like name
-- (A) above its category, network or product (B) and the rest of the
-- searchable content (C: type, status, currency, user, amount).
ALTER TABLE transactions ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig,
        coalesce(enrichment->>'merchant_name', '') || ' ' ||
        coalesce(enrichment->>'counterparty', '') || ' ' ||
        coalesce(enrichment->>'asset', '')), 'A') ||
    setweight(to_tsvector('simple'::regconfig,
        coalesce(enrichment->>'merchant_category', '') || ' ' ||
        coalesce(enrichment->>'network', '') || ' ' ||
        coalesce(product, '')), 'B') ||
    setweight(to_tsvector('simple'::regconfig, searchable_content), 'C')
) STORED;
CREATE INDEX transactions_search ON transactions USING GIN (search_vector);

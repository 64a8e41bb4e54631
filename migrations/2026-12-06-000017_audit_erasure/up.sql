-- Issue 26, erasure, legal holds and retention.
--
-- 1. Chain encoding version 2 (see src/store/chain.rs): a chained entry
-- carries 16 random bytes of its own, `blinding`, and its hash covers the
-- blinded digest of its personal fields (key, key bytes, headers, unsigned
-- steering headers, payload digest), not the fields. Erasing the entry
-- removes those fields, the payload and the blinding, and keeps the digest
-- in `erased_digest`: the chain still verifies, and nothing is left to
-- check a guess at the key against.
ALTER TABLE audit_log
    ADD COLUMN blinding      BYTEA,
    ADD COLUMN erased_digest BYTEA;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_blinding_check CHECK (
    (blinding IS NULL OR octet_length(blinding) = 16)
    AND (erased_digest IS NULL OR octet_length(erased_digest) = 32)
    AND (blinding IS NULL OR erased_digest IS NULL));

-- Operator entries of this issue: an erasure, a legal hold placed and
-- released, an archived period deleted by the retention policy. The list
-- of statuses is set by one function, for later migrations too: the check
-- goes on audit_log and every partition (those made with LIKE … INCLUDING
-- CONSTRAINTS hold it as their own).
CREATE FUNCTION custodian_audit_statuses(statuses TEXT[]) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    part TEXT;
BEGIN
    ALTER TABLE audit_log DROP CONSTRAINT audit_log_status_check;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'audit_log'::regclass LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS audit_log_status_check', part);
    END LOOP;
    EXECUTE format('ALTER TABLE audit_log ADD CONSTRAINT audit_log_status_check CHECK (status IN (%s))',
                   (SELECT string_agg(quote_literal(s), ', ') FROM unnest(statuses) AS s));
END
$$;
REVOKE ALL ON FUNCTION custodian_audit_statuses(TEXT[]) FROM PUBLIC;
SELECT custodian_audit_statuses(ARRAY[
    'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
    'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
    'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED',
    'MESSAGE_ERASED', 'AUDIT_HOLD', 'AUDIT_HOLD_RELEASED', 'ARCHIVE_DELETED']);

-- 2. The one change an audit_log row accepts: its erasure. Everything the
-- chain covers stays as it was; the personal fields, the payload and the
-- blinding become NULL and the blinded digest is kept (an entry written
-- before version 2 loses only its payload: its chain covers its key as
-- it is). Anything else is refused, as before.
CREATE FUNCTION custodian_audit_erasure_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.id, NEW.message_id, NEW.status, NEW.topic, NEW.kafka_partition, NEW.kafka_offset,
            NEW.event_type, NEW.attempt, NEW.error, NEW.consumer_group, NEW.occurred_at,
            NEW.recorded_at, NEW.detail, NEW.received_at, NEW.kafka_timestamp, NEW.chain_id,
            NEW.chain_seq, NEW.entry_hash)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.message_id, OLD.status, OLD.topic, OLD.kafka_partition, OLD.kafka_offset,
            OLD.event_type, OLD.attempt, OLD.error, OLD.consumer_group, OLD.occurred_at,
            OLD.recorded_at, OLD.detail, OLD.received_at, OLD.kafka_timestamp, OLD.chain_id,
            OLD.chain_seq, OLD.entry_hash)
       AND NEW.payload IS NULL
       AND (
           -- Version 2 (or unchained): everything personal goes.
           ((OLD.blinding IS NOT NULL OR OLD.chain_id IS NULL) AND OLD.erased_digest IS NULL
            AND NEW.blinding IS NULL AND octet_length(NEW.erased_digest) = 32
            AND NEW.message_key IS NULL AND NEW.key_bytes IS NULL AND NEW.headers IS NULL
            AND NEW.received_detail IS NULL AND NEW.payload_sha256 IS NULL)
           -- Version 1: only the payload (the chain covers the rest).
        OR (OLD.blinding IS NULL AND OLD.chain_id IS NOT NULL
            AND NEW.blinding IS NULL AND NEW.erased_digest IS NOT DISTINCT FROM OLD.erased_digest
            AND (NEW.message_key, NEW.key_bytes, NEW.headers, NEW.received_detail, NEW.payload_sha256)
                IS NOT DISTINCT FROM
                (OLD.message_key, OLD.key_bytes, OLD.headers, OLD.received_detail, OLD.payload_sha256)))
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'custodian: % on % refused: the audit trail is append-only (an erasure is the one change it takes)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION custodian_audit_erasure_only();

-- The legacy tables (before migration 000006, unchained: verify only
-- checks that none is newer than their freeze) take an erasure too: their
-- key, payload and headers become NULL, nothing else changes.
CREATE FUNCTION custodian_legacy_payload_erasure_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.message_id, NEW.topic, NEW.kafka_partition, NEW.kafka_offset, NEW.kafka_timestamp,
            NEW.first_seen_at)
           IS NOT DISTINCT FROM
           (OLD.message_id, OLD.topic, OLD.kafka_partition, OLD.kafka_offset, OLD.kafka_timestamp,
            OLD.first_seen_at)
       AND NEW.message_key IS NULL AND NEW.payload IS NULL AND NEW.headers IS NULL
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'custodian: % on % refused: the audit trail is append-only (an erasure is the one change it takes)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE FUNCTION custodian_legacy_audit_erasure_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.id, NEW.message_id, NEW.status, NEW.topic, NEW.kafka_partition, NEW.kafka_offset,
            NEW.event_type, NEW.attempt, NEW.error, NEW.consumer_group, NEW.occurred_at,
            NEW.recorded_at, NEW.detail)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.message_id, OLD.status, OLD.topic, OLD.kafka_partition, OLD.kafka_offset,
            OLD.event_type, OLD.attempt, OLD.error, OLD.consumer_group, OLD.occurred_at,
            OLD.recorded_at, OLD.detail)
       AND NEW.message_key IS NULL
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'custodian: % on % refused: the audit trail is append-only (an erasure is the one change it takes)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER message_audit_append_only ON message_audit_v1;
CREATE TRIGGER message_audit_append_only BEFORE UPDATE OR DELETE ON message_audit_v1
    FOR EACH ROW EXECUTE FUNCTION custodian_legacy_audit_erasure_only();
DROP TRIGGER message_payloads_append_only ON message_payloads_v1;
CREATE TRIGGER message_payloads_append_only BEFORE UPDATE OR DELETE ON message_payloads_v1
    FOR EACH ROW EXECUTE FUNCTION custodian_legacy_payload_erasure_only();

-- 3. Legal holds: on a message key, or on a period. An active hold blocks
-- the erasure of what it covers and the deletion of archived periods it
-- covers. A hold is placed once and released once; never deleted.
CREATE TABLE audit_holds (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_key     TEXT,
    from_time       TIMESTAMPTZ,
    to_time         TIMESTAMPTZ,
    reason          TEXT        NOT NULL,
    held_by         TEXT        NOT NULL,
    held_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    released_at     TIMESTAMPTZ,
    released_by     TEXT,
    release_reason  TEXT,
    CONSTRAINT audit_holds_one_kind CHECK (
        (message_key IS NOT NULL AND from_time IS NULL AND to_time IS NULL)
        OR (message_key IS NULL AND from_time IS NOT NULL AND to_time IS NOT NULL AND from_time < to_time)),
    CONSTRAINT audit_holds_released CHECK (
        (released_at IS NULL AND released_by IS NULL AND release_reason IS NULL)
        OR (released_at IS NOT NULL AND released_by IS NOT NULL AND release_reason IS NOT NULL))
);
CREATE INDEX audit_holds_active_keys ON audit_holds (message_key) WHERE released_at IS NULL;

CREATE FUNCTION custodian_audit_hold_release_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.released_at IS NULL
       AND (NEW.id, NEW.message_key, NEW.from_time, NEW.to_time, NEW.reason, NEW.held_by, NEW.held_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.message_key, OLD.from_time, OLD.to_time, OLD.reason, OLD.held_by, OLD.held_at)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'custodian: % on audit_holds refused: a hold is only ever released, once', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_holds_release_only BEFORE UPDATE OR DELETE ON audit_holds
    FOR EACH ROW EXECUTE FUNCTION custodian_audit_hold_release_only();
CREATE TRIGGER audit_holds_no_truncate BEFORE TRUNCATE ON audit_holds
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

-- The active holds covering entries: (hold id, entry id).
CREATE FUNCTION custodian_audit_holds_covering(ids BIGINT[], at TIMESTAMPTZ[])
RETURNS TABLE (hold_id BIGINT, entry_id BIGINT) LANGUAGE sql STABLE
SET search_path = public, pg_temp AS $$
    SELECT h.id, e.id
      FROM unnest(ids, at) AS e(id, recorded_at)
      JOIN audit_log a ON a.id = e.id AND a.recorded_at = e.recorded_at
      JOIN audit_holds h ON h.released_at IS NULL
       AND (h.message_key = a.message_key
            OR (h.from_time <= a.recorded_at AND a.recorded_at < h.to_time))
$$;

-- 4. Erases entries (ids with their recorded_at, for partition pruning;
-- digests: the blinded digest to keep, NULL for a version 1 entry) unless
-- a hold covers one of them: then nothing is erased. Returns how many
-- rows changed.
CREATE FUNCTION custodian_audit_erase(ids BIGINT[], at TIMESTAMPTZ[], digests BYTEA[])
RETURNS BIGINT LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    held BIGINT;
    changed BIGINT := 0;
    n BIGINT;
    i INT;
BEGIN
    IF cardinality(ids) <> cardinality(at) OR cardinality(ids) <> cardinality(digests) THEN
        RAISE EXCEPTION 'custodian: ids, times and digests differ in number'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A hold placed meanwhile waits for this erasure, or this for it.
    LOCK TABLE audit_holds IN SHARE MODE;
    SELECT hold_id INTO held FROM custodian_audit_holds_covering(ids, at) LIMIT 1;
    IF held IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: legal hold % covers an entry to erase; nothing was erased', held
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(ids), 0) LOOP
        IF digests[i] IS NULL THEN
            UPDATE audit_log SET payload = NULL
             WHERE id = ids[i] AND recorded_at = at[i] AND payload IS NOT NULL;
        ELSE
            UPDATE audit_log SET message_key = NULL, key_bytes = NULL, headers = NULL,
                   received_detail = NULL, payload = NULL, payload_sha256 = NULL,
                   blinding = NULL, erased_digest = digests[i]
             WHERE id = ids[i] AND recorded_at = at[i] AND erased_digest IS NULL;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
    END LOOP;
    RETURN changed;
END
$$;

-- Erases the legacy rows of messages `ids` unless a hold covers one (by
-- key, or by the time it was recorded); how many rows changed.
CREATE FUNCTION custodian_audit_erase_legacy(ids UUID[])
RETURNS BIGINT LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    held BIGINT;
    a BIGINT;
    p BIGINT;
BEGIN
    LOCK TABLE audit_holds IN SHARE MODE;
    SELECT h.id INTO held FROM message_audit_v1 m JOIN audit_holds h ON h.released_at IS NULL
       AND (h.message_key = m.message_key
            OR (h.from_time <= m.recorded_at AND m.recorded_at < h.to_time))
     WHERE m.message_id = ANY(ids) LIMIT 1;
    IF held IS NULL THEN
        SELECT h.id INTO held FROM message_payloads_v1 m JOIN audit_holds h ON h.released_at IS NULL
           AND (convert_to(h.message_key, 'UTF8') = m.message_key
                OR (h.from_time <= m.first_seen_at AND m.first_seen_at < h.to_time))
         WHERE m.message_id = ANY(ids) LIMIT 1;
    END IF;
    IF held IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: legal hold % covers a legacy entry to erase; nothing was erased', held
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE message_audit_v1 SET message_key = NULL
     WHERE message_id = ANY(ids) AND message_key IS NOT NULL;
    GET DIAGNOSTICS a = ROW_COUNT;
    UPDATE message_payloads_v1 SET message_key = NULL, payload = NULL, headers = NULL
     WHERE message_id = ANY(ids)
       AND (message_key IS NOT NULL OR payload IS NOT NULL OR headers IS NOT NULL);
    GET DIAGNOSTICS p = ROW_COUNT;
    RETURN a + p;
END
$$;

-- 5. An erased archive: the partition's new manifest (its files rewritten
-- without the erased fields) is recorded superseding the latest one, for
-- the same number of entries.
CREATE FUNCTION custodian_audit_archive_supersede(part TEXT, url TEXT, path TEXT, sha BYTEA,
                                                  signed TEXT, n BIGINT, prev_sha BYTEA)
RETURNS BIGINT LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    prev audit_archives;
    id BIGINT;
BEGIN
    SELECT * INTO prev FROM audit_archives WHERE partition_name = part ORDER BY audit_archives.id DESC LIMIT 1
        FOR UPDATE;
    IF NOT FOUND OR prev.entries <> n THEN
        RAISE EXCEPTION 'custodian: % has no archive of % entries to supersede', part, n
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Built on the latest manifest, not one another erasure replaced.
    IF prev.manifest_sha256 <> prev_sha THEN
        RAISE EXCEPTION 'custodian: the archive of % changed meanwhile; nothing recorded', part
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF sha <> sha256(convert_to(signed, 'UTF8')) THEN
        RAISE EXCEPTION 'custodian: the manifest''s SHA-256 is not its text''s'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_partitions WHERE name = part AND archive_deleted_at IS NOT NULL) THEN
        RAISE EXCEPTION 'custodian: the archive of % was deleted by retention', part
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO audit_archives (partition_name, store_url, manifest_path, manifest_sha256, manifest,
                                entries, supersedes, verified_at)
    VALUES (part, url, path, sha, signed, n, prev.id, now())
    RETURNING audit_archives.id INTO id;
    RETURN id;
END
$$;

-- 6. Retention: an archived period deleted from the archive. Its seal
-- stays (what it held, signed); verify reports the period as deleted by
-- retention and carries each chain across it from the seal. Refused
-- while a hold covers the period (holds on keys the caller checks
-- against the archived files).
ALTER TABLE audit_partitions ADD COLUMN archive_deleted_at TIMESTAMPTZ;
CREATE FUNCTION custodian_audit_archive_deleted(part TEXT)
RETURNS VOID LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p audit_partitions;
    held BIGINT;
BEGIN
    LOCK TABLE audit_holds IN SHARE MODE;
    SELECT * INTO p FROM audit_partitions WHERE name = part FOR UPDATE;
    IF NOT FOUND OR p.dropped_at IS NULL OR p.archive_deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: % is not an archived period', part
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT h.id INTO held FROM audit_holds h
     WHERE h.released_at IS NULL AND h.from_time IS NOT NULL
       AND h.from_time < p.to_time AND (p.from_time IS NULL OR p.from_time < h.to_time)
     LIMIT 1;
    IF held IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: legal hold % covers %; its archive is kept', held, part
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE audit_partitions SET archive_deleted_at = now() WHERE name = part;
END
$$;

-- 7. Rights. custodian's role (and so an operator through the API) may
-- erase, hold and release, and record an erased archive; deleting an
-- archived period belongs to the archivist.
GRANT SELECT, INSERT ON audit_holds TO custodian_audit_writer;
GRANT UPDATE (released_at, released_by, release_reason) ON audit_holds TO custodian_audit_writer;
REVOKE ALL ON FUNCTION custodian_audit_erase(BIGINT[], TIMESTAMPTZ[], BYTEA[]),
    custodian_audit_erase_legacy(UUID[]),
    custodian_audit_archive_supersede(TEXT, TEXT, TEXT, BYTEA, TEXT, BIGINT, BYTEA),
    custodian_audit_archive_deleted(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custodian_audit_erase(BIGINT[], TIMESTAMPTZ[], BYTEA[]),
    custodian_audit_erase_legacy(UUID[]),
    custodian_audit_archive_supersede(TEXT, TEXT, TEXT, BYTEA, TEXT, BIGINT, BYTEA)
    TO custodian_audit_writer;
GRANT EXECUTE ON FUNCTION custodian_audit_archive_deleted(TEXT) TO custodian_audit_archivist;

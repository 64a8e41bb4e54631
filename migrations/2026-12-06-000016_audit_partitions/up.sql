-- An audit trail that lives for years (issue 26): `audit_log` becomes a
-- table partitioned by `recorded_at` (one partition per month, or per day
-- with audit.partition = "day"), so a period can be sealed, archived to
-- object storage, verified there, and dropped from the database, and each
-- partition's indexes stay the size of one period.
--
-- The existing table is not copied: it becomes the first partition
-- (`audit_log_initial`, from the beginning of time to the end of the
-- current month), its rows untouched, so every entry verifies exactly as
-- before. New partitions are created ahead of time by custodian
-- (custodian_audit_partitions_ensure, at start and on a timer).
--
-- Two things change because a partitioned table cannot have a unique
-- index that leaves out its partition key:
-- - the fork barrier: (chain_id, chain_seq) is still unique within each
--   partition, and across partitions every writer moves its chain's row in
--   `audit_chain_heads` from the head it built on to the new one, in the
--   same transaction (compare-and-set): a writer whose head is stale
--   updates nothing and rebuilds, so a chain never forks;
-- - `recorded_at` defaults to clock_timestamp(), the time of the insert,
--   not of the transaction's start: an entry is only built on a committed
--   head, so a chain's entries are recorded in sequence order and each
--   partition holds one contiguous run of every chain.
--
-- The foreign key from audit_log to audit_chains goes: it cost a trigger
-- call per entry, and `audit verify` reports any chain_id it does not know.

-- 1. Heads: one row per chain, moved by every append.
CREATE TABLE audit_chain_heads (
    chain_id        INTEGER     PRIMARY KEY REFERENCES audit_chains (chain_id),
    chain_seq       BIGINT      NOT NULL CHECK (chain_seq >= 0),
    entry_hash      BYTEA       NOT NULL CHECK (octet_length(entry_hash) = 32)
);
INSERT INTO audit_chain_heads (chain_id, chain_seq, entry_hash)
SELECT c.chain_id, coalesce(h.chain_seq, 0), coalesce(h.entry_hash, decode(repeat('00', 32), 'hex'))
  FROM audit_chains c
  LEFT JOIN LATERAL (SELECT chain_seq, entry_hash FROM audit_log l
                      WHERE l.chain_id = c.chain_id ORDER BY chain_seq DESC LIMIT 1) h ON true;

-- A chain registered anywhere gets its head row (sequence 0, the genesis
-- hash) in the same statement.
CREATE FUNCTION custodian_chain_head_init() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_chain_heads (chain_id, chain_seq, entry_hash)
    VALUES (NEW.chain_id, 0, decode(repeat('00', 32), 'hex'))
    ON CONFLICT (chain_id) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_chains_head AFTER INSERT ON audit_chains
    FOR EACH ROW EXECUTE FUNCTION custodian_chain_head_init();

-- 2. The old table becomes the first partition.
DO $$
DECLARE
    next_id BIGINT;
BEGIN
    -- The id sequence outlives the identity column it belonged to.
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO next_id FROM audit_log_id_seq;
    ALTER TABLE audit_log ALTER COLUMN id DROP IDENTITY;
    EXECUTE format('CREATE SEQUENCE audit_log_id_seq AS BIGINT START WITH %s', next_id);
END
$$;
ALTER TABLE audit_log RENAME TO audit_log_initial;
ALTER TABLE audit_log_initial RENAME CONSTRAINT audit_log_chain_seq TO audit_log_initial_chain_seq;
ALTER TABLE audit_log_initial DROP CONSTRAINT audit_log_chain_id_fkey;
DROP TRIGGER audit_log_append_only ON audit_log_initial;
ALTER TRIGGER audit_log_no_truncate ON audit_log_initial RENAME TO audit_log_initial_no_truncate;
ALTER INDEX audit_log_by_message RENAME TO audit_log_initial_by_message;
ALTER INDEX audit_log_by_time RENAME TO audit_log_initial_by_time;
ALTER INDEX audit_log_by_key RENAME TO audit_log_initial_by_key;
ALTER INDEX audit_log_by_status RENAME TO audit_log_initial_by_status;
ALTER INDEX audit_log_by_event_type RENAME TO audit_log_initial_by_event_type;
ALTER INDEX audit_log_by_offset RENAME TO audit_log_initial_by_offset;
ALTER INDEX audit_log_by_replay_job RENAME TO audit_log_initial_by_replay_job;
ALTER INDEX audit_log_unchained RENAME TO audit_log_initial_unchained;

CREATE TABLE audit_log (
    id              BIGINT      NOT NULL DEFAULT nextval('audit_log_id_seq'),
    message_id      UUID        NOT NULL,
    status          TEXT        NOT NULL,
    topic           TEXT        NOT NULL,
    kafka_partition INTEGER     NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    message_key     TEXT,
    event_type      TEXT,
    attempt         INTEGER     NOT NULL,
    error           TEXT,
    consumer_group  TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    detail          JSONB,
    received_at     TIMESTAMPTZ,
    received_detail JSONB,
    key_bytes       BYTEA,
    payload         BYTEA,
    headers         JSONB,
    kafka_timestamp TIMESTAMPTZ,
    payload_sha256  BYTEA,
    chain_id        INTEGER,
    chain_seq       BIGINT,
    entry_hash      BYTEA,
    CONSTRAINT audit_log_check CHECK (received_at IS NOT NULL
        OR (key_bytes IS NULL AND payload IS NULL AND headers IS NULL)),
    CONSTRAINT audit_log_status_check CHECK (status IN (
        'MESSAGE_PROCESSED', 'MESSAGE_FAILED', 'MESSAGE_DLQ',
        'MESSAGE_DUPLICATE', 'MESSAGE_REPLAYED', 'MESSAGE_DISCARDED',
        'MESSAGE_PUBLISHED', 'MESSAGE_RETRY_SCHEDULED')),
    CONSTRAINT audit_log_chained_fully CHECK (
        (chain_id IS NULL AND chain_seq IS NULL AND entry_hash IS NULL)
        OR (chain_id IS NOT NULL AND chain_seq >= 1 AND octet_length(entry_hash) = 32))
) PARTITION BY RANGE (recorded_at);
ALTER TABLE audit_log_initial ALTER COLUMN recorded_at SET DEFAULT clock_timestamp();
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;

-- The same indexes as before, per partition (the initial partition's
-- existing ones are attached, not rebuilt).
CREATE INDEX audit_log_by_message ON audit_log (message_id);
CREATE INDEX audit_log_by_time ON audit_log (occurred_at, id);
CREATE INDEX audit_log_by_key ON audit_log (left(message_key, 200), occurred_at, id)
    WHERE message_key IS NOT NULL;
CREATE INDEX audit_log_by_status ON audit_log (status, occurred_at, id)
    WHERE status <> 'MESSAGE_PROCESSED';
CREATE INDEX audit_log_by_event_type ON audit_log (left(event_type, 200), occurred_at, id)
    WHERE event_type IS NOT NULL;
CREATE INDEX audit_log_by_offset ON audit_log (topic, kafka_partition, kafka_offset, id);
CREATE INDEX audit_log_by_replay_job ON audit_log ((detail->>'job_id'))
    WHERE status = 'MESSAGE_REPLAYED' AND detail->>'job_id' IS NOT NULL;
CREATE INDEX audit_log_unchained ON audit_log (id) WHERE chain_id IS NULL;

-- 3. What each partition is, and where it is in its life: open, sealed
-- (no insert accepted any more), archived (verified copies in object
-- storage), dropped. Changed only by the functions below.
CREATE TABLE audit_partitions (
    name            TEXT        PRIMARY KEY,
    -- NULL: from the beginning (the initial partition).
    from_time       TIMESTAMPTZ,
    to_time         TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sealed_at       TIMESTAMPTZ,
    dropped_at      TIMESTAMPTZ
);

DO $$
DECLARE
    boundary TIMESTAMPTZ := date_trunc('month', now(), 'UTC') + interval '1 month';
BEGIN
    EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION audit_log_initial FOR VALUES FROM (MINVALUE) TO (%L)',
                   boundary);
    INSERT INTO audit_partitions (name, from_time, to_time) VALUES ('audit_log_initial', NULL, boundary);
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

-- A sealed partition refuses every insert (routed through audit_log too).
CREATE FUNCTION custodian_refuse_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'custodian: % is sealed: its period of the audit trail is closed', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Creates the partitions that are missing up to `until`, each one
-- `period` ('month' or 'day') long from the end of the last one, and
-- returns their names. A trail that was not written for a while gets one
-- partition for the gap, not one per period missed. Runs as its owner:
-- custodian's role creates partitions only through it.
CREATE FUNCTION custodian_audit_partitions_ensure(period TEXT, until TIMESTAMPTZ)
RETURNS SETOF TEXT LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    lo TIMESTAMPTZ;
    hi TIMESTAMPTZ;
    part TEXT;
    current_start TIMESTAMPTZ;
BEGIN
    IF period NOT IN ('month', 'day') THEN
        RAISE EXCEPTION 'custodian: a partition is a month or a day, not %', period
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF until > now() + interval '800 days' THEN
        RAISE EXCEPTION 'custodian: partitions are created at most 800 days ahead, not until %', until
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Never queue writers behind a long reader for long.
    SET LOCAL lock_timeout = '5s';
    PERFORM pg_advisory_xact_lock(hashtext('custodian_audit_partitions'));
    SELECT max(to_time) INTO lo FROM audit_partitions;
    current_start := date_trunc(period, now(), 'UTC');
    WHILE lo < until LOOP
        IF lo < current_start - ('1 ' || period)::interval THEN
            hi := current_start;
        ELSE
            hi := date_trunc(period, lo, 'UTC') + ('1 ' || period)::interval;
        END IF;
        part := 'audit_log_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
        -- Created beside, then attached: attaching locks audit_log only
        -- against other DDL, never against the writers.
        EXECUTE format('CREATE TABLE %I (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (recorded_at >= %L AND recorded_at < %L)',
                       part, part || '_range', lo, hi);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (chain_id, chain_seq)', part, part || '_chain_seq');
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change()',
                       part || '_no_truncate', part);
        EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        INSERT INTO audit_partitions (name, from_time, to_time) VALUES (part, lo, hi);
        RETURN NEXT part;
        lo := hi;
    END LOOP;
END
$$;

-- Seals a partition whose period has ended: from now on it refuses
-- inserts. Taking the trigger's lock waits for every transaction still
-- writing to it, so what the caller reads next, in the same transaction,
-- is all the partition will ever hold. False if it was sealed already.
CREATE FUNCTION custodian_audit_partition_seal(part TEXT)
RETURNS BOOLEAN LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p audit_partitions;
BEGIN
    SET LOCAL lock_timeout = '30s';
    SELECT * INTO p FROM audit_partitions WHERE name = part FOR UPDATE;
    IF NOT FOUND OR p.dropped_at IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: no audit partition %', part USING ERRCODE = 'undefined_table';
    END IF;
    IF p.sealed_at IS NOT NULL THEN
        RETURN false;
    END IF;
    IF p.to_time > now() THEN
        RAISE EXCEPTION 'custodian: % runs until %; only an ended period can be sealed', part, p.to_time
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW EXECUTE FUNCTION custodian_refuse_sealed()',
                   part || '_sealed', part);
    UPDATE audit_partitions SET sealed_at = now() WHERE name = part;
    RETURN true;
END
$$;

-- 4. Seals: a signed statement of what a sealed partition holds, per chain
-- (first and last sequence number and hash, rows, the checkpoint it
-- extends). The same line is appended to audit.checkpoint_file.
CREATE TABLE audit_seals (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_name  TEXT        NOT NULL UNIQUE REFERENCES audit_partitions (name),
    -- Every entry the partition held when sealed (as the note says).
    entries         BIGINT      NOT NULL,
    -- The signed note, one line, as written to the file.
    line            TEXT        NOT NULL,
    sealed_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- 5. Archives: each sealed partition written to object storage as Parquet
-- files with a signed manifest, read back and verified before the
-- partition may be dropped. A later manifest of the same partition (an
-- erasure rewrote a file) supersedes the earlier one and names it.
CREATE TABLE audit_archives (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_name  TEXT        NOT NULL REFERENCES audit_partitions (name),
    -- Where: the store's URL and the manifest's path within it.
    store_url       TEXT        NOT NULL,
    manifest_path   TEXT        NOT NULL,
    manifest_sha256 BYTEA       NOT NULL CHECK (octet_length(manifest_sha256) = 32),
    -- The signed manifest itself (JSON and signature line).
    manifest        TEXT        NOT NULL,
    entries         BIGINT      NOT NULL,
    supersedes      BIGINT      REFERENCES audit_archives (id),
    verified_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_archives_by_partition ON audit_archives (partition_name, id);

-- Drops a sealed partition once a verified archive of it is recorded,
-- holding as many entries as the partition and its seal. Detaching locks
-- audit_log against everything for an instant: the lock is waited for
-- 200 ms at most (writers queue behind the wait), and the caller tries
-- again later.
CREATE FUNCTION custodian_audit_partition_drop(part TEXT)
RETURNS VOID LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    p audit_partitions;
    held BIGINT;
    sealed BIGINT;
    archived BIGINT;
BEGIN
    SET LOCAL lock_timeout = '200ms';
    SELECT * INTO p FROM audit_partitions WHERE name = part FOR UPDATE;
    IF NOT FOUND OR p.dropped_at IS NOT NULL THEN
        RAISE EXCEPTION 'custodian: no audit partition %', part USING ERRCODE = 'undefined_table';
    END IF;
    SELECT entries INTO sealed FROM audit_seals WHERE partition_name = part;
    SELECT entries INTO archived FROM audit_archives WHERE partition_name = part ORDER BY id DESC LIMIT 1;
    IF p.sealed_at IS NULL OR sealed IS NULL OR archived IS NULL THEN
        RAISE EXCEPTION 'custodian: % has no seal and verified archive; not dropped', part
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('SELECT count(*) FROM %I', part) INTO held;
    IF held <> sealed OR held <> archived THEN
        RAISE EXCEPTION 'custodian: % holds % entries, its seal % and its archive %; not dropped',
            part, held, sealed, archived
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('ALTER TABLE audit_log DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    UPDATE audit_partitions SET dropped_at = now() WHERE name = part;
END
$$;

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_archives_append_only BEFORE UPDATE OR DELETE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION custodian_refuse_change();
CREATE TRIGGER audit_archives_no_truncate BEFORE TRUNCATE ON audit_archives
    FOR EACH STATEMENT EXECUTE FUNCTION custodian_refuse_change();

-- 6. The views of migration 000006 read the new table.
CREATE OR REPLACE VIEW message_audit AS
    SELECT id, message_id, status, topic, kafka_partition, kafka_offset,
           message_key, event_type, attempt, error, consumer_group,
           occurred_at, recorded_at, detail
      FROM message_audit_v1
    UNION ALL
    SELECT id, message_id, 'MESSAGE_RECEIVED', topic, kafka_partition, kafka_offset,
           message_key, event_type, 1, NULL, consumer_group,
           received_at, recorded_at, received_detail
      FROM audit_log WHERE received_at IS NOT NULL
    UNION ALL
    SELECT id, message_id, status, topic, kafka_partition, kafka_offset,
           message_key, event_type, attempt, error, consumer_group,
           occurred_at, recorded_at, detail
      FROM audit_log;
CREATE OR REPLACE VIEW message_payloads AS
    SELECT message_id, topic, kafka_partition, kafka_offset, message_key,
           payload, headers, kafka_timestamp, first_seen_at
      FROM message_payloads_v1
    UNION ALL
    (SELECT DISTINCT ON (a.message_id)
           a.message_id, a.topic, a.kafka_partition, a.kafka_offset, a.key_bytes,
           a.payload, a.headers, a.kafka_timestamp, a.recorded_at
      FROM audit_log a
     WHERE a.received_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM message_payloads_v1 p WHERE p.message_id = a.message_id)
     ORDER BY a.message_id, a.id);

-- 7. Rights. custodian's role appends to the trail, moves the heads and
-- creates partitions ahead (through the function); it reads seals and
-- archives but cannot write them, seal or drop. Those belong to a role of
-- their own, custodian_audit_archivist (a member of the writer role), for
-- the credentials `custodian audit seal|archive` run with: a leaked service
-- credential cannot take a period out of the database.
DO $$
BEGIN
    CREATE ROLE custodian_audit_archivist NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT custodian_audit_writer TO custodian_audit_archivist;
GRANT SELECT, INSERT ON audit_log TO custodian_audit_writer;
GRANT SELECT ON audit_seals, audit_archives, audit_partitions TO custodian_audit_writer;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO custodian_audit_writer;
GRANT INSERT ON audit_seals, audit_archives TO custodian_audit_archivist;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO custodian_audit_writer;
REVOKE ALL ON FUNCTION custodian_audit_partitions_ensure(TEXT, TIMESTAMPTZ),
    custodian_audit_partition_seal(TEXT), custodian_audit_partition_drop(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custodian_audit_partitions_ensure(TEXT, TIMESTAMPTZ) TO custodian_audit_writer;
GRANT EXECUTE ON FUNCTION custodian_audit_partition_seal(TEXT), custodian_audit_partition_drop(TEXT)
    TO custodian_audit_archivist;

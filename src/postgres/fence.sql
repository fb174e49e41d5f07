-- fencelock's fence in PostgreSQL: per resource, the highest fencing token
-- a transaction committed under, and the lock whose tokens it counts;
-- checked and raised inside the caller's transaction (docs/fencing.md).
-- Idempotent: running it again changes nothing (IF NOT EXISTS, OR
-- REPLACE), so it can be run at every start.

CREATE TABLE IF NOT EXISTS fencelock_fence (
    resource   text PRIMARY KEY,
    -- Tokens of two locks are two unrelated sequences: comparing them
    -- would let any writer with a large enough number through. A
    -- resource is fenced by the lock of its first token, for good.
    lock_name  text NOT NULL,
    token      bigint NOT NULL CHECK (token >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Admits the current transaction's writes to `p_resource` under fencing
-- token `p_token` of lock `p_lock`: returns it when no higher token was
-- committed for the resource, and records it; otherwise raises SQLSTATE
-- FL001 (stale token) or FL002 (a token of another lock), which fails the
-- transaction, so nothing it wrote is kept.
--
-- The upsert locks the resource's row until the transaction ends: a
-- concurrent transaction of another holder waits at its own call, then
-- sees this token if this one committed (and is refused when its token is
-- lower), or the old one if this one rolled back. A check and a write in
-- one statement, no read-then-write race. Equal tokens pass: one holder
-- may commit several transactions under its token.
CREATE OR REPLACE FUNCTION fencelock_fence(p_resource text, p_lock text, p_token bigint)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    accepted bigint;
    highest  bigint;
    fenced_by text;
BEGIN
    INSERT INTO fencelock_fence AS f (resource, lock_name, token)
    VALUES (p_resource, p_lock, p_token)
    ON CONFLICT (resource) DO UPDATE
        SET token = EXCLUDED.token, updated_at = now()
        WHERE f.token <= EXCLUDED.token AND f.lock_name = EXCLUDED.lock_name
    RETURNING f.token INTO accepted;
    IF accepted IS NULL THEN
        SELECT token, lock_name INTO highest, fenced_by
        FROM fencelock_fence WHERE resource = p_resource;
        IF fenced_by <> p_lock THEN
            RAISE EXCEPTION USING
                ERRCODE = 'FL002',
                MESSAGE = format('fencelock: %L is fenced by the tokens of lock %L, not of %L',
                                 p_resource, fenced_by, p_lock),
                DETAIL = format('fenced by lock: %s', fenced_by),
                HINT = 'use the lock that guards this resource, or another resource name';
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'FL001',
            MESSAGE = format('fencelock: stale fencing token %s for %L', p_token, p_resource),
            DETAIL = format('highest accepted token: %s', highest),
            HINT = 'a newer holder of the lock wrote; this one lost the lock';
    END IF;
    RETURN accepted;
END
$$;

-- The common case: the resource is named after the lock that guards it.
CREATE OR REPLACE FUNCTION fencelock_fence(p_resource text, p_token bigint)
RETURNS bigint
LANGUAGE sql
AS $$ SELECT fencelock_fence(p_resource, p_resource, p_token) $$;

-- Pin both functions to the schema they were created in, with pg_temp
-- last: neither a caller's search_path nor a temporary table by the same
-- name may point the fence at another table.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION fencelock_fence(text, text, bigint) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION fencelock_fence(text, bigint) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;

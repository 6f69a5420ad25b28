-- Core: authentication lookup for the API role, admin functions for the CLI (owner only).

-- Credentials are not readable by fl_api; this returns only what auth needs for one key.
CREATE OR REPLACE FUNCTION fl_auth_lookup(p_family text, p_public_id text)
RETURNS TABLE (credential_id uuid, tenant_id uuid, factor_id text, secret_hash bytea,
               rate_per_sec numeric, burst int)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    SELECT c.id, c.tenant_id, t.factor_id, c.secret_hash, c.rate_per_sec, c.burst
      FROM credentials c
      JOIN tenants t ON t.id = c.tenant_id
     WHERE c.family = p_family
       AND c.public_id = p_public_id
       AND c.revoked_at IS NULL
$$;
REVOKE ALL ON FUNCTION fl_auth_lookup(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_auth_lookup(text, text) TO fl_api;

CREATE OR REPLACE FUNCTION fl_tenant_add(p_name text, p_factor_id text) RETURNS uuid
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_con text;
BEGIN
    IF p_name IS NULL OR btrim(p_name) = '' OR p_name ~ '^[[:space:]]|[[:space:]]$|[[:cntrl:]]' THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid tenant name',
            DETAIL = 'A tenant name is not blank, has no control characters and no space at either end.';
    END IF;
    IF p_factor_id IS NULL OR btrim(p_factor_id) = '' OR length(p_factor_id) > 64 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid FactorID',
            DETAIL = 'A FactorID is 1 to 64 characters (the Auth-FactorID header).';
    END IF;
    IF EXISTS (SELECT 1 FROM tenants WHERE name = p_name) THEN
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Tenant exists',
            DETAIL = format('A tenant named %s already exists.', p_name);
    END IF;
    IF EXISTS (SELECT 1 FROM tenants WHERE factor_id = p_factor_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'FactorID exists',
            DETAIL = format('FactorID %s is used by another tenant.', p_factor_id);
    END IF;
    -- the checks above, and a concurrent add of the same name that commits in between
    BEGIN
        INSERT INTO tenants (name, factor_id) VALUES (p_name, p_factor_id) RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_con = CONSTRAINT_NAME;
        IF v_con = 'tenants_name_key' THEN
            RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Tenant exists',
                DETAIL = format('A tenant named %s already exists.', p_name);
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'FactorID exists',
            DETAIL = format('FactorID %s is used by another tenant.', p_factor_id);
    END;
    RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION fl_tenant_add(text, text) FROM PUBLIC;

-- Owner: a tenant's id by its name, FL404 when there is none (for the admin commands).
CREATE OR REPLACE FUNCTION fl_tenant_by_name(p_name text) RETURNS uuid
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT id INTO v_id FROM tenants WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Tenant not found',
            DETAIL = format('No tenant named %s.', p_name);
    END IF;
    RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION fl_tenant_by_name(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION fl_key_add(p_tenant_name text, p_family text, p_public_id text,
                                      p_secret_hash bytea, p_label text) RETURNS uuid
    LANGUAGE plpgsql
AS $$
DECLARE
    v_tenant uuid;
    v_id uuid;
BEGIN
    v_tenant := fl_tenant_by_name(p_tenant_name);
    IF p_family IS NULL OR p_family NOT IN ('posting','factoring','leads','quotes','financing') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid family',
            HINT = 'One of posting, factoring, leads, quotes, financing.';
    END IF;
    IF p_secret_hash IS NULL OR octet_length(p_secret_hash) <> 32 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid secret hash',
            HINT = 'Expected the 32-byte sha256 of the secret.';
    END IF;
    IF EXISTS (SELECT 1 FROM credentials WHERE family = p_family AND public_id = p_public_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Key exists',
            DETAIL = format('Family %s already has a key %s.', p_family, p_public_id);
    END IF;
    BEGIN
        INSERT INTO credentials (tenant_id, family, public_id, secret_hash, label)
        VALUES (v_tenant, p_family, p_public_id, p_secret_hash, nullif(btrim(p_label), ''))
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN        -- the same key added at the same moment
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Key exists',
            DETAIL = format('Family %s already has a key %s.', p_family, p_public_id);
    END;
    RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION fl_key_add(text, text, text, bytea, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION fl_key_revoke(p_family text, p_public_id text) RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE credentials SET revoked_at = now()
     WHERE family = p_family AND public_id = p_public_id AND revoked_at IS NULL;
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION fl_key_revoke(text, text) FROM PUBLIC;

-- A new secret for an active key: the public id, and so everything that belongs to the
-- credential (a leads partner's deals and webhook subscription), stays. The tenant's
-- factor_id, or NULL when there is no such active key.
CREATE OR REPLACE FUNCTION fl_key_rotate(p_family text, p_public_id text, p_secret_hash bytea) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    v_factor text;
BEGIN
    UPDATE credentials c SET secret_hash = p_secret_hash
      FROM tenants t
     WHERE t.id = c.tenant_id AND c.family = p_family AND c.public_id = p_public_id AND c.revoked_at IS NULL
    RETURNING t.factor_id INTO v_factor;
    RETURN v_factor;
END
$$;
REVOKE ALL ON FUNCTION fl_key_rotate(text, text, bytea) FROM PUBLIC;


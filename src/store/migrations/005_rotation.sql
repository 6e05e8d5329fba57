-- Key rotation: a stable quota subject shared along a rotation lineage, and maximum-age policies.

-- quota_subject is the identity that quota and rate-limit counters key on. A new key starts its
-- own lineage (quota_subject = key_id); RotateKey copies it to the successor, so the old and the
-- new key draw from the same counters during grace and rotating never refills anyone's quota.
ALTER TABLE api_keys ADD COLUMN quota_subject text;
UPDATE api_keys SET quota_subject = key_id WHERE quota_subject IS NULL;

-- Every insert path (the service, the CLI, psql) gets a lineage without having to know about it.
CREATE FUNCTION api_keys_default_quota_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.quota_subject := COALESCE(NEW.quota_subject, NEW.key_id);
  RETURN NEW;
END $$;
CREATE TRIGGER api_keys_quota_subject BEFORE INSERT ON api_keys
  FOR EACH ROW EXECUTE FUNCTION api_keys_default_quota_subject();
ALTER TABLE api_keys ALTER COLUMN quota_subject SET NOT NULL;

-- Keys sharing one lineage (quota roll-ups, "show me every generation of this key").
CREATE INDEX api_keys_quota_subject ON api_keys (quota_subject);

-- A key has at most one successor and at most one predecessor, whatever races happen.
CREATE UNIQUE INDEX api_keys_one_successor ON api_keys (successor_key_id) WHERE successor_key_id IS NOT NULL;
CREATE UNIQUE INDEX api_keys_one_predecessor ON api_keys (predecessor_key_id) WHERE predecessor_key_id IS NOT NULL;

-- Maximum key age. A row applies to keys of its tenant (NULL = every tenant) on its plan (NULL =
-- every plan); when several apply, the strictest (smallest) maximum age wins, so a tenant cannot
-- loosen a policy set for everyone. A key older than that reports `rotation_due`.
CREATE TABLE key_rotation_policies (
  policy_id       bigserial PRIMARY KEY,
  tenant_id       text REFERENCES tenants (tenant_id) ON DELETE CASCADE,
  plan            text,
  max_age_seconds bigint NOT NULL CHECK (max_age_seconds > 0),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE NULLS NOT DISTINCT (tenant_id, plan)
);

-- Replicas hold every policy in memory; any change tells them to reload.
CREATE FUNCTION notify_rotation_policy_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('tollgate_invalidate', 'rotation_policy:' || COALESCE(NEW.tenant_id, OLD.tenant_id, '*'));
  RETURN NULL;
END $$;
CREATE TRIGGER key_rotation_policies_notify AFTER INSERT OR UPDATE OR DELETE ON key_rotation_policies
  FOR EACH ROW EXECUTE FUNCTION notify_rotation_policy_change();

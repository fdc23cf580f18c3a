-- Attempts being checked are counted apart from failures. Before, an attempt was counted as
-- a failure while its password was checked, so a wrong password arriving while the same
-- person signed in elsewhere could count their good attempts and lock the account.
ALTER TABLE login_throttle ADD COLUMN in_flight integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0);

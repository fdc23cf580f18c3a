-- Each person's language and time zone for the interface. NULL: the browser's language
-- (Accept-Language) and the vault's configured time zone.
ALTER TABLE users
    ADD COLUMN locale text CHECK (locale IN ('en', 'zh-CN')),
    ADD COLUMN time_zone text CHECK (time_zone IS NULL OR (length(time_zone) BETWEEN 1 AND 64));

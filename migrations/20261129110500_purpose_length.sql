-- A purpose's minimum is counted in visible characters, a CJK character weighing 2.5
-- Latin ones (src/requests/purpose.rs: 6 Chinese characters or 15 letters), which SQL's
-- length() cannot state. The table keeps a floor every accepted purpose meets (six
-- characters) and the maximum; the service applies the rule itself.
ALTER TABLE access_requests DROP CONSTRAINT IF EXISTS access_requests_purpose_check;
ALTER TABLE access_requests
    ADD CONSTRAINT access_requests_purpose_length CHECK (length(purpose) BETWEEN 6 AND 2000);

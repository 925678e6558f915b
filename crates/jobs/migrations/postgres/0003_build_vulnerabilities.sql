-- The vulnerability gate's summary of a build's image
-- ({"critical": N, "high": N, "warnings": [...]}, JSON as text), when the
-- worker scanned it.

ALTER TABLE builds ADD COLUMN vulnerabilities TEXT;

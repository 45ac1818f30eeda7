-- An incoming concatenated message whose remaining parts never arrived is stored
-- after [inbox] incomplete_after_minutes with the parts that did: missing_parts
-- says how many of its `parts` are missing (each marked […] in the body).
ALTER TABLE inbox ADD COLUMN missing_parts INTEGER NOT NULL DEFAULT 0;

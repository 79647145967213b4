ALTER TABLE widgets ADD COLUMN size integer NOT NULL DEFAULT 0;
CREATE INDEX widgets_size ON widgets (size);

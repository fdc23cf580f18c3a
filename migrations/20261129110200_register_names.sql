-- Display names of shelves and boxes (storerooms have had one from the start). The code
-- stays the stable key that filing, import, search and labels use; the name is what people
-- read and may be changed (Chinese allowed). Empty: the code is shown.
ALTER TABLE shelves ADD COLUMN name text NOT NULL DEFAULT '' CHECK (length(name) <= 100);
ALTER TABLE boxes ADD COLUMN name text NOT NULL DEFAULT '' CHECK (length(name) <= 100);
ALTER TABLE storerooms ADD CONSTRAINT storerooms_name_length CHECK (length(name) <= 100) NOT VALID;

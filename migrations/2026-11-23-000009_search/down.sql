DROP INDEX transactions_search;
ALTER TABLE transactions DROP COLUMN search_vector;

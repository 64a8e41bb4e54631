DROP TABLE transactions;
DROP TABLE applied_messages;

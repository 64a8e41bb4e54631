DROP TABLE inventory;
DROP TABLE payments;
DROP TABLE orders;
DROP TABLE users;

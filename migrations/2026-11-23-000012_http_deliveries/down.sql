DROP TABLE http_deliveries;

DROP TABLE service_principals;

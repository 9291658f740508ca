DROP TABLE workspaces;
DROP TABLE users;

DROP TABLE space_purges;
DROP TABLE files;
DROP TABLE folders;

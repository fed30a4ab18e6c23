INSERT INTO pgb.raw (v) VALUES (1);

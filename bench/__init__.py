"""`make bench`: load tests of the real stack (livechat serve + Envoy) on SQLite and PostgreSQL."""

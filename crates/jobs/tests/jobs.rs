//! The jobs crate against real databases and queues: SQLite files, a
//! throwaway PostgreSQL cluster and `redis-server`, started by the tests
//! on loopback (see testkit). Each check runs once per backend it names.

mod harness;

mod events;
mod load;
mod migrate;
mod queue;
mod store;

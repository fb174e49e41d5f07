//! Fencing in PostgreSQL on a real server: the fence itself through plain
//! SQL (`fence`), and fenced transactions held by real Redis locks
//! (`transactions`). The fixture's own tests are in `fixtures::postgres`.

mod fence;
mod transactions;

//! Hostile peers and servers: fakes that play a broken or foreign peer
//! (`peers`) run through one table (`protocol`), and real redis-servers in a
//! state that makes them refuse or forget: saying `+OK` to everything, a
//! replica, out of memory (`redis`), turned into a replica mid-hold
//! (`replica`), scripts flushed while in use (`scripts`). Each gives a
//! typed error, nothing panics or hangs, and nothing is granted falsely.

mod peers;
mod protocol;
mod redis;
mod replica;
mod scripts;

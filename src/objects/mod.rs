//! Durable Objects: one `ProfileObject` per subject (SQLite-backed storage is
//! the source of truth; memory only caches), one `VisitorObject` per visitor
//! (impossible travel), one `HubObject` for the global streams. The request path reaches them only through their
//! bindings (`PROFILES`, `VISITORS`), never by importing them.

pub mod hub;
pub mod profile;
pub mod sockets;
pub mod store;
pub mod visitor;

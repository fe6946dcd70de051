//! The pure core of edgeintel: everything that decides (facts, IP keys, geo
//! math, signals, scoring, the header contract, profiles, enforcement, the
//! analytics and its tick, the wire formats and storage keys); the glue in
//! `edge` and `objects` only does the I/O. Nothing here imports `worker` or `wasm_bindgen`, reads
//! the clock or does I/O, so every rule is tested natively with `cargo test`
//! at exact inputs. Time, when a rule needs it, is an argument.

pub mod alerting;
pub mod analytics;
pub mod asn;
pub mod auth_guard;
pub mod batches;
pub mod cache;
pub mod challenge;
pub mod crawlers;
pub mod deltas;
pub mod enforce;
pub mod events;
pub mod facts;
pub mod fanout;
pub mod fingerprint;
pub mod geo;
pub mod headers;
pub mod insights;
pub mod ip;
pub mod keys;
pub mod lists;
pub mod outcome;
pub mod preview;
pub mod profile;
pub mod protocol;
pub mod ratelimit;
pub mod redirect;
pub mod rollups;
pub mod rotation;
pub mod rules;
pub mod score;
pub mod secrets;
pub mod signals;
pub mod signature;
pub mod signed_agent;
pub mod sketch;
pub mod stats;
pub mod stepup;
pub mod tick;
pub mod ticket;
pub mod travel;
pub mod views;
pub mod webhooks;
pub mod window;
pub mod wire;
